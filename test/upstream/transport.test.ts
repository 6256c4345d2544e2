import { afterAll, describe, expect, it } from 'vitest';
import { isOciError } from '../../src/errors.js';
import { createUpstream } from '../../src/upstream/index.js';
import { closeAll, freePort, json, rejection, stallingTokenServer, startServer, text, upstream } from './helpers.js';

afterAll(async () => {
  await closeAll();
});

describe('redirects', () => {
  const creds = { username: 'bob', password: 'hunter2' };
  const basic = `Basic ${Buffer.from('bob:hunter2').toString('base64')}`;

  it('carries Authorization along a same-origin redirect but not to another origin', async () => {
    const cdnSeen: Array<string | undefined> = [];
    const cdn = await startServer((req, res) => {
      cdnSeen.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end('blob-bytes');
    });
    const registrySeen: Record<string, string | undefined> = {};
    const registry = await startServer((req, res, url) => {
      registrySeen[url.pathname] = req.headers.authorization;
      if (req.headers.authorization !== basic) {
        json(res, 401, {}, { 'www-authenticate': 'Basic realm="r"' });
      } else if (url.pathname === '/v2/r/blobs/old') {
        res.writeHead(301, { location: 'new?x=1' }).end(); // relative
      } else if (url.pathname === '/v2/r/blobs/new') {
        res.writeHead(307, { location: `${cdn.origin}/presigned?sig=abc` }).end();
      } else json(res, 404, {});
    });
    const u = upstream({ url: registry.origin, credentials: creds });
    const res = await u.request({ method: 'GET', repository: 'r', path: '/v2/r/blobs/old' });
    expect(res.status).toBe(200);
    expect(await text(res.body)).toBe('blob-bytes');
    expect(res.url).toBe(`${cdn.origin}/presigned?sig=abc`);
    expect(registrySeen['/v2/r/blobs/new']).toBe(basic);
    expect(cdnSeen).toEqual([undefined]);
  });

  it('does not answer a challenge from a redirect target', async () => {
    const cdn = await startServer((req, res) =>
      json(res, 401, {}, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${req.socket.localPort ?? 0}/token"` }),
    );
    const registry = await startServer((_req, res) => res.writeHead(302, { location: `${cdn.origin}/blob` }).end());
    const res = await upstream({ url: registry.origin }).request({ method: 'GET', repository: 'r', path: '/v2/r/blobs/x' });
    expect([res.status, res.url]).toEqual([401, `${cdn.origin}/blob`]);
    await text(res.body);
  });

  it('follows at most five redirects', async () => {
    let hits = 0;
    const srv = await startServer((_req, res) => {
      hits++;
      res.writeHead(302, { location: '/loop' }).end('moved');
    });
    const started = Date.now();
    const err = await rejection(upstream({ url: srv.origin }).request({ method: 'GET', repository: 'r', path: '/loop' }));
    expect(isOciError(err) && err.code).toBe('UNAVAILABLE');
    expect((err as Error).message).toMatch(/more than 5 redirects/);
    expect(hits).toBe(6);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('follows redirects for HEAD and returns a 3xx without Location as it is', async () => {
    const srv = await startServer((req, res, url) => {
      if (url.pathname === '/a') res.writeHead(308, { location: '/b' }).end();
      else if (url.pathname === '/b') res.writeHead(200, { 'docker-content-digest': 'sha256:x', 'x-method': req.method }).end();
      else res.writeHead(302).end();
    });
    const u = upstream({ url: srv.origin });
    const head = await u.request({ method: 'HEAD', repository: 'r', path: '/a' });
    expect([head.status, head.headers['x-method'], head.url]).toEqual([200, 'HEAD', `${srv.origin}/b`]);
    await text(head.body);
    const bare = await u.request({ method: 'GET', repository: 'r', path: '/c' });
    expect(bare.status).toBe(302);
    await text(bare.body);
  });

  it('keeps a path like //host on the upstream’s origin', async () => {
    const srv = await startServer((_req, res, url) => json(res, 200, { path: url.pathname }));
    const res = await upstream({ url: srv.origin }).request({ method: 'GET', repository: 'r', path: '//example.com/x' });
    expect(res.url.startsWith(srv.origin)).toBe(true);
    await text(res.body);
  });
});

describe('failures to get an answer', () => {
  it('rejects with UNAVAILABLE quickly when the connection is refused', async () => {
    const port = await freePort();
    const started = Date.now();
    const err = await rejection(
      upstream({ url: `http://127.0.0.1:${port}`, name: 'hub' }).request({ method: 'GET', repository: 'r', path: '/v2/' }),
    );
    expect(isOciError(err) && err.code).toBe('UNAVAILABLE');
    expect((err as Error).message).toBe('upstream hub unreachable: connection refused');
    expect((err as Error).cause).toBeDefined();
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('rejects with UNAVAILABLE after the headers timeout when the server never answers', async () => {
    const srv = await startServer(() => undefined);
    const started = Date.now();
    const err = await rejection(
      upstream({ url: srv.origin, timeouts: { headers: 200 } }).request({ method: 'GET', repository: 'r', path: '/v2/' }),
    );
    expect(isOciError(err) && err.code).toBe('UNAVAILABLE');
    expect((err as Error).message).toMatch(/no response headers in time/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('rejects with the abort reason when the caller aborts', async () => {
    const srv = await startServer(() => undefined);
    const u = upstream({ url: srv.origin });
    const reason = new Error('client went away');
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 50);
    const err = await rejection(u.request({ method: 'GET', repository: 'r', path: '/v2/', signal: controller.signal }));
    expect(err).toBe(reason);
    const already = await rejection(u.request({ method: 'GET', repository: 'r', path: '/v2/', signal: AbortSignal.abort(reason) }));
    expect(already).toBe(reason);
  });

  it('rejects with the abort reason while waiting for a token', async () => {
    const srv = await stallingTokenServer();
    const reason = new Error('gone');
    const controller = new AbortController();
    // Once the exchange is under way, not after a fixed delay that a slow machine may not reach it in.
    void srv.tokenRequested.then(() => controller.abort(reason));
    const u = upstream({ url: srv.origin, timeouts: { headers: 2_000 } });
    const err = await rejection(u.request({ method: 'GET', repository: 'r', path: '/v2/r/manifests/x', signal: controller.signal }));
    expect(err).toBe(reason);
  });

  it('errors the body stream when the body stalls past the body timeout', async () => {
    const srv = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('first part'); // and then nothing
    });
    const res = await upstream({ url: srv.origin, timeouts: { body: 200 } }).request({ method: 'GET', repository: 'r', path: '/blob' });
    expect(res.status).toBe(200);
    const err = await rejection(text(res.body));
    expect((err as { code?: string }).code).toBe('UND_ERR_BODY_TIMEOUT');
  });

  it('lets a request undici refuses to send fail as the caller’s error, not UNAVAILABLE', async () => {
    const srv = await startServer((_req, res) => json(res, 200, {}));
    const err = await rejection(
      upstream({ url: srv.origin }).request({ method: 'GET', repository: 'r', path: '/v2/', headers: { accept: 'a\r\nx-injected: 1' } }),
    );
    expect(isOciError(err)).toBe(false);
    expect((err as { code?: string }).code).toBe('UND_ERR_INVALID_ARG');
  });

  it('hands HTTP errors back as responses', async () => {
    const srv = await startServer((_req, res) => json(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'down' }] }));
    const res = await upstream({ url: srv.origin }).request({ method: 'GET', repository: 'r', path: '/v2/' });
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/json');
    expect(await text(res.body)).toContain('down');
  });
});

describe('configuration', () => {
  it('refuses upstream URLs it cannot use safely', () => {
    expect(() => createUpstream({ name: 'x', url: 'ftp://example.com' })).toThrow(/http\(s\)/);
    expect(() => createUpstream({ name: 'x', url: 'https://u:secret@example.com' })).toThrow(/must not carry credentials/);
    expect(() => createUpstream({ name: 'x', url: 'https://example.com/?q=1' })).toThrow(/query/);
  });

  it('puts a path prefix of the upstream URL before every request path', async () => {
    const srv = await startServer((_req, res, url) => json(res, 200, { path: url.pathname }));
    const res = await upstream({ url: `${srv.origin}/mirror/` }).request({ method: 'GET', repository: 'r', path: '/v2/' });
    expect(JSON.parse(await text(res.body))).toEqual({ path: '/mirror/v2/' });
  });
});
