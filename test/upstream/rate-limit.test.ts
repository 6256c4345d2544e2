/**
 * Back-off after a 429 at the transport, against HTTP servers on 127.0.0.1 and a faked clock:
 * what reaches the servers while an upstream is held off (nothing: no registry request, no token
 * request, no other URL of the upstream), and what does not start a back-off.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { OciError } from '../../src/errors.js';
import { createFailoverUpstream } from '../../src/upstream/index.js';
import type { FailoverUpstream } from '../../src/upstream/index.js';
import { closeAll, startServer, upstream } from './helpers.js';

afterAll(closeAll);

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const get = { method: 'GET' as const, repository: 'team/app', path: '/v2/team/app/manifests/1' };
const failures = (p: Promise<unknown>) => p.then(() => undefined, (e: OciError) => e);

const tracked: FailoverUpstream[] = [];
afterAll(() => Promise.all(tracked.map((u) => u.close())));

describe('back-off after a 429', () => {
  it('holds every URL of the upstream off, without failing over or marking the URL down, until Retry-After is over', async () => {
    const hits = { a: 0, b: 0 };
    let limited = true;
    const a = await startServer((_req, res) => {
      hits.a++;
      if (limited) res.writeHead(429, { 'retry-after': '30', 'ratelimit-remaining': '0;w=21600' }).end();
      else res.writeHead(200, { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '99;w=21600' }).end('{}');
    });
    const b = await startServer((_req, res) => {
      hits.b++;
      res.writeHead(200).end('{}');
    });
    const c = clock();
    const up = createFailoverUpstream({ name: 'hub.test', urls: [a.origin, b.origin], rateLimit: { now: c.now } });
    tracked.push(up);

    const first = await up.request(get);
    first.body.resume();
    expect(first.status).toBe(429);
    const held = await failures(up.request(get));
    expect(held).toMatchObject({ code: 'TOOMANYREQUESTS', status: 429, headers: { 'Retry-After': '30' } });
    expect(hits).toEqual({ a: 1, b: 0 });
    expect(up.health().map((u) => u.state)).toEqual(['up', 'up']);
    expect(up.rateLimit?.()).toEqual({ remaining: 0, window: 21600, backoffSeconds: 30 });

    c.advance(29_000);
    expect((await failures(up.request(get)))?.headers).toEqual({ 'Retry-After': '1' });
    expect(hits).toEqual({ a: 1, b: 0 });
    limited = false;
    c.advance(1_000);
    const again = await up.request(get);
    again.body.resume();
    expect(again.status).toBe(200);
    expect(hits).toEqual({ a: 2, b: 0 });
    expect(up.rateLimit?.()).toEqual({ limit: 100, remaining: 99, window: 21600, backoffSeconds: 0 });
  });

  it('sends no token request either while held off', async () => {
    const paths: string[] = [];
    const server = await startServer((req, res, url) => {
      paths.push(url.pathname);
      if (url.pathname === '/token') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t0ken"}');
      if (req.headers.authorization !== 'Bearer t0ken') {
        return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${server.port}/token",service="s"` }).end();
      }
      res.writeHead(429, { 'retry-after': '60' }).end();
    });
    const c = clock();
    const up = upstream({ url: server.origin, rateLimit: { now: c.now } });
    const first = await up.request(get);
    first.body.resume();
    expect(first.status).toBe(429);
    expect(paths).toEqual(['/v2/team/app/manifests/1', '/token', '/v2/team/app/manifests/1']);

    const other = { ...get, repository: 'team/other', path: '/v2/team/other/manifests/1' };
    expect((await failures(up.request(other)))?.code).toBe('TOOMANYREQUESTS');
    expect(paths).toHaveLength(3);
  });

  it("starts on the token server's 429 too: until its Retry-After is over, neither the registry nor the token server is asked", async () => {
    const paths: string[] = [];
    let limited = true;
    const server = await startServer((req, res, url) => {
      paths.push(url.pathname);
      if (url.pathname === '/token') {
        if (limited) return void res.writeHead(429, { 'retry-after': '30' }).end();
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t0ken"}');
      }
      if (req.headers.authorization !== 'Bearer t0ken') {
        return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${server.port}/token",service="s"` }).end();
      }
      res.writeHead(200).end('{}');
    });
    const c = clock();
    const backoffs: unknown[] = [];
    const up = upstream({ url: server.origin, rateLimit: { now: c.now, onBackoff: (e) => backoffs.push(e) } });
    const refused = await failures(up.request(get));
    expect(refused).toMatchObject({ code: 'TOOMANYREQUESTS', status: 429, headers: { 'Retry-After': '30' } });
    expect(paths).toEqual(['/v2/team/app/manifests/1', '/token']);
    expect(backoffs).toEqual([{ upstream: 'test', seconds: 30, source: 'retry-after' }]);
    expect(up.rateLimit?.()).toEqual({ backoffSeconds: 30 });

    c.advance(29_000);
    expect(await failures(up.request(get))).toMatchObject({ code: 'TOOMANYREQUESTS', headers: { 'Retry-After': '1' } });
    expect(paths).toHaveLength(2);
    limited = false;
    c.advance(1_000);
    const served = await up.request(get);
    served.body.resume();
    expect(served.status).toBe(200);
    expect(paths.slice(2)).toEqual(['/v2/team/app/manifests/1', '/token', '/v2/team/app/manifests/1']);
  });

  it('starts none for a 429 from a redirect target, nor for a 503 with Retry-After', async () => {
    const cdn = await startServer((_req, res) => res.writeHead(429, { 'retry-after': '60' }).end());
    let hits = 0;
    const origin = await startServer((req, res, url) => {
      hits++;
      if (url.pathname.includes('/blobs/')) return void res.writeHead(307, { location: `${cdn.origin}/blob` }).end();
      res.writeHead(503, { 'retry-after': '60' }).end();
    });
    const up = upstream({ url: origin.origin });
    const blob = await up.request({ method: 'GET', repository: 'team/app', path: '/v2/team/app/blobs/sha256:00' });
    blob.body.resume();
    expect(blob.status).toBe(429);
    const manifest = await up.request(get);
    manifest.body.resume();
    expect(manifest.status).toBe(503);
    const again = await up.request(get);
    again.body.resume();
    expect(hits).toBe(3);
    expect(up.rateLimit?.()).toEqual({ backoffSeconds: 0 });
  });
});
