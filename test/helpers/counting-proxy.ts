/**
 * A plain HTTP pass-through on 127.0.0.1 that records every request before relaying it to a
 * real server (a docker-registry), so that a test can tell exactly which upstream requests the
 * mirror made: which method, which path, and how many. Nothing is changed on the way, except
 * that `Host` names the server behind it. A request can also be held before it is relayed,
 * to keep the mirror's fetch of it in flight for as long as a test needs. And it can play a
 * front such as Docker Hub's: add headers to the answers it relays (`ratelimit-remaining`), or
 * answer requests itself (a 429) without relaying them.
 */
import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface Hold {
  /** Resolves when a held request has arrived (it then waits for `release`). */
  readonly arrived: Promise<void>;
  /** Relays the held requests, and every later one, at once. Idempotent. */
  release(): void;
}

/** What the proxy does besides relaying; each hook sees every request, recorded first. */
export interface FrontBehaviour {
  /** An answer of its own instead of relaying the request (a 429, say); undefined relays it. */
  answer?(req: ProxiedRequest): { status: number; headers?: Record<string, string>; body?: string } | undefined;
  /** Headers added to a relayed answer. */
  headers?(req: ProxiedRequest): Record<string, string>;
}

export interface CountingProxy {
  /** `http://127.0.0.1:PORT`: give this to the mirror as the upstream URL. */
  readonly url: string;
  /** Every request since the start (or the last `reset`), in order. */
  readonly requests: readonly ProxiedRequest[];
  /** Requests with this method (`*` for any) whose path (query included) contains `pathPart`. */
  count(method: string, pathPart?: string): number;
  /** Holds requests with this method whose path contains `pathPart` until released. */
  hold(method: string, pathPart: string): Hold;
  /** From now on, behaves so (`{}`: a plain relay again). */
  behave(behaviour: FrontBehaviour): void;
  /** Forgets the requests seen so far. */
  reset(): void;
  close(): Promise<void>;
}

export async function startCountingProxy(targetUrl: string): Promise<CountingProxy> {
  const target = new URL(targetUrl);
  let requests: ProxiedRequest[] = [];
  const holds = new Set<{ method: string; pathPart: string; arrive(): void; released: Promise<void>; release(): void }>();
  let behaviour: FrontBehaviour = {};
  const server = createServer(async (req, res) => {
    const path = req.url ?? '/';
    const seen = { method: req.method ?? 'GET', path, headers: req.headers };
    requests.push(seen);
    const own = behaviour.answer?.(seen);
    if (own) {
      req.resume();
      res.writeHead(own.status, own.headers).end(own.body);
      return;
    }
    const added = behaviour.headers?.(seen) ?? {};
    for (const h of holds) {
      if (h.method !== req.method || !path.includes(h.pathPart)) continue;
      h.arrive();
      await h.released;
    }
    const upstream = request(
      {
        hostname: target.hostname,
        port: target.port,
        method: req.method,
        path,
        headers: { ...req.headers, host: target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, { ...answer.headers, ...added });
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    count: (method, pathPart = '') =>
      requests.filter((r) => (method === '*' || r.method === method) && r.path.includes(pathPart)).length,
    hold: (method, pathPart) => {
      let arrive!: () => void;
      let release!: () => void;
      const arrived = new Promise<void>((resolve) => (arrive = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      const h = {
        method,
        pathPart,
        arrive,
        released,
        release: () => {
          holds.delete(h);
          release();
        },
      };
      holds.add(h);
      return { arrived, release: h.release };
    },
    behave: (b) => {
      behaviour = b;
    },
    reset: () => {
      requests = [];
    },
    close: async () => {
      for (const h of holds) h.release();
      const closed = once(server, 'close');
      server.close();
      // The mirror keeps its upstream connections alive: they would hold close() open.
      server.closeAllConnections();
      await closed;
    },
  };
}
