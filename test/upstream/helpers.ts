/**
 * For the upstream tests: in-process HTTP servers on 127.0.0.1 and upstreams, every one of them
 * closed by `closeAll()`.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createUpstream } from '../../src/upstream/index.js';
import type { Upstream, UpstreamOptions } from '../../src/upstream/index.js';

export interface TestServer {
  server: Server;
  port: number;
  /** `http://127.0.0.1:<port>` */
  origin: string;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

const open = new Set<Server>();
const upstreams = new Set<Upstream>();

/** An upstream named `test` unless told otherwise, closed by `closeAll()`. */
export function upstream(options: Partial<UpstreamOptions> & { url: string }): Upstream {
  const u = createUpstream({ name: 'test', ...options });
  upstreams.add(u);
  return u;
}

export async function startServer(handler: Handler): Promise<TestServer> {
  const server = createServer((req, res) => handler(req, res, new URL(req.url ?? '/', 'http://placeholder')));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.add(server);
  const { port } = server.address() as AddressInfo;
  return { server, port, origin: `http://127.0.0.1:${port}` };
}

export async function closeAll(): Promise<void> {
  await Promise.all([...upstreams].map((u) => u.close()));
  upstreams.clear();
  await Promise.all(
    [...open].map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
  open.clear();
}

/** A port nobody listens on: bound, then released. */
export async function freePort(): Promise<number> {
  const { server, port } = await startServer(() => undefined);
  open.delete(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export async function text(body: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

export interface StallingTokenServer extends TestServer {
  /** Resolves once a token request has arrived: from then on an exchange is under way. */
  tokenRequested: Promise<void>;
}

/** A registry that challenges every request with a Bearer realm on itself whose `/token` never answers. */
export async function stallingTokenServer(): Promise<StallingTokenServer> {
  let requested!: () => void;
  const tokenRequested = new Promise<void>((resolve) => (requested = resolve));
  const srv = await startServer((req, res, url) => {
    if (url.pathname === '/token') return requested();
    json(res, 401, {}, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${req.socket.localPort ?? 0}/token"` });
  });
  return { ...srv, tokenRequested };
}

/** The rejection of a promise that must reject. */
export function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}
