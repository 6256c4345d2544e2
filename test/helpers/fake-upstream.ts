/**
 * An in-process registry we control, for fault injection: it serves blobs and manifests
 * from memory, counts every request, and can slow, cut or corrupt a body on demand.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface BlobFault {
  /** Close the connection after this many body bytes. */
  cutAt?: number;
  /** Send these bytes instead (same declared length unless they differ in size). */
  replaceWith?: Buffer;
  /** Pause this long (ms) between chunks of `chunkSize`. */
  delayMs?: number;
  chunkSize?: number;
  /** Omit Content-Length (chunked encoding). */
  chunked?: boolean;
  /** Send the body over and over, chunked, until the client goes away (a bound for tests: 1 GiB). */
  endless?: boolean;
  /** Wait for this promise before sending the rest of the body after `holdAt` bytes. */
  holdAt?: number;
  hold?: Promise<void>;
}

export interface ManifestEntry {
  body: Buffer;
  mediaType: string;
}

export interface FakeUpstream {
  url: string;
  blobs: Map<string, Buffer>;
  /** Digest → the only repositories that hold it, as distribution links blobs; absent: every repository. */
  blobRepositories: Map<string, Set<string>>;
  /** `repo:tag` and `repo@digest` → manifest. */
  manifests: Map<string, ManifestEntry>;
  faults: Map<string, BlobFault>;
  /** Subject digest → referrers index; subjects absent here answer 404 (no referrers API). */
  referrers: Map<string, object>;
  /** `METHOD path` → count. */
  counts: Map<string, number>;
  /** The last GET of each blob, as sent: body bytes written, and whether the client closed the connection before the end. */
  bodies: Map<string, { bytes: number; cut: boolean }>;
  /** Every request, in order. */
  requests: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }>;
  count(method: string, pathPart: string): number;
  /** Answer everything with this status (e.g. 503), or undefined for normal service. */
  failWith: number | undefined;
  /** With `repositories`, the blob is served there only (404 elsewhere). */
  addBlob(data: Buffer, repositories?: string[]): string;
  addManifest(repo: string, tag: string | undefined, body: object | Buffer, mediaType?: string): string;
  close(): Promise<void>;
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const sockets = new Set<Socket>();
  const state: Omit<FakeUpstream, 'url' | 'close'> = {
    blobs: new Map(),
    blobRepositories: new Map(),
    manifests: new Map(),
    faults: new Map(),
    referrers: new Map(),
    counts: new Map(),
    bodies: new Map(),
    requests: [],
    failWith: undefined,
    count(method, pathPart) {
      let n = 0;
      for (const [k, v] of this.counts) if (k.startsWith(`${method} `) && k.includes(pathPart)) n += v;
      return n;
    },
    addBlob(data, repositories) {
      const d = sha256(data);
      this.blobs.set(d, data);
      if (repositories) this.blobRepositories.set(d, new Set([...(this.blobRepositories.get(d) ?? []), ...repositories]));
      return d;
    },
    addManifest(repo, tag, body, mediaType = 'application/vnd.oci.image.manifest.v1+json') {
      const bytes = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
      const d = sha256(bytes);
      const entry = { body: bytes, mediaType };
      this.manifests.set(`${repo}@${d}`, entry);
      if (tag) this.manifests.set(`${repo}:${tag}`, entry);
      return d;
    },
  };

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const key = `${req.method} ${url.pathname}`;
    state.counts.set(key, (state.counts.get(key) ?? 0) + 1);
    state.requests.push({ method: req.method ?? '', path: url.pathname + url.search, headers: req.headers });
    if (state.failWith) {
      res.writeHead(state.failWith, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected' }] }));
      return;
    }
    if (url.pathname === '/v2/') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    const tags = /^\/v2\/(.+)\/tags\/list$/.exec(url.pathname);
    const refs = /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(url.pathname);
    if (refs && state.referrers.has(refs[2]!)) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', 'oci-filters-applied': url.searchParams.has('artifactType') ? 'artifactType' : '' });
      res.end(JSON.stringify(state.referrers.get(refs[2]!)));
      return;
    }
    if (tags) {
      const repo = tags[1]!;
      const all = [...state.manifests.keys()].filter((k) => k.startsWith(`${repo}:`)).map((k) => k.slice(repo.length + 1)).sort();
      const n = Number(url.searchParams.get('n') ?? all.length);
      const last = url.searchParams.get('last');
      const from = last ? all.filter((t) => t > last) : all;
      const page = from.slice(0, n);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (page.length < from.length) headers.link = `</v2/${repo}/tags/list?last=${page.at(-1)}&n=${n}>; rel="next"`;
      res.writeHead(200, headers).end(JSON.stringify({ name: repo, tags: page }));
      return;
    }
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const entry = state.manifests.get(ref.includes(':') ? `${repo}@${ref}` : `${repo}:${ref}`);
      if (!entry) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      res.writeHead(200, {
        'content-type': entry.mediaType,
        'content-length': entry.body.length,
        'docker-content-digest': sha256(entry.body),
      });
      res.end(req.method === 'HEAD' ? undefined : entry.body);
      return;
    }
    const scope = state.blobRepositories.get(ref);
    const blob = scope && !scope.has(repo) ? undefined : state.blobs.get(ref);
    if (!blob) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] }));
      return;
    }
    const fault = state.faults.get(ref) ?? {};
    const body = fault.replaceWith ?? blob;
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'docker-content-digest': ref };
    if (!fault.chunked && !fault.endless) headers['content-length'] = blob.length;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const limit = fault.endless ? 1024 ** 3 : (fault.cutAt ?? body.length);
    const chunk = fault.chunkSize ?? 64 * 1024;
    const sent = { bytes: 0, cut: false };
    state.bodies.set(ref, sent);
    const gone = new AbortController();
    res.on('close', () => {
      sent.cut = !res.writableFinished;
      gone.abort();
    });
    for (let off = 0; off < limit; off += chunk) {
      if (fault.holdAt !== undefined && fault.hold && off >= fault.holdAt) {
        await fault.hold;
        fault.hold = undefined;
      }
      const at = off % body.length;
      const piece = body.subarray(at, Math.min(at + chunk, body.length, at + limit - off));
      sent.bytes += piece.length;
      // A client that goes away mid-wait never drains: its close ends the wait instead.
      if (!res.write(piece)) await once(res, 'drain', { signal: gone.signal }).catch(() => {});
      if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
      if (res.destroyed) return;
    }
    if (fault.cutAt !== undefined) {
      res.socket?.destroy();
      return;
    }
    res.end();
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as FakeUpstream;
}
