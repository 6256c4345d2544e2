import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Agent } from 'undici';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { isOciError } from '../../src/errors.js';
import { createUpstream } from '../../src/upstream/index.js';
import type { Upstream } from '../../src/upstream/index.js';
import { checkRealm } from '../../src/upstream/token.js';
import { closeAll, json, rejection, stallingTokenServer, startServer, text, upstream } from './helpers.js';
import type { TestServer } from './helpers.js';

interface FakeOptions {
  /** What the token endpoint answers for the n-th fetch (1-based). */
  token?: (n: number, req: IncomingMessage) => { status?: number; body: unknown };
  /** Realm to advertise; defaults to this server's own `/token`. */
  realm?: (srv: TestServer) => string;
  /** Extra auth-params appended to the challenge. */
  challenge?: string;
  /** Whether a registry request is authorised; defaults to any token this server issued. */
  accept?: (authorization: string | undefined, issued: Set<string>) => boolean;
  /** Bytes of padding in every 401 body (a body too large to be buffered must be drained or dropped). */
  pad401?: number;
  /** Answers authorised registry requests; defaults to 200 `{ path }`. */
  route?: (req: IncomingMessage, res: ServerResponse, url: URL) => void;
}

interface Fake {
  srv: TestServer;
  tokenFetches: Array<{ url: URL; authorization: string | undefined }>;
  /** Authorization of every registry (non-token) request, in order. */
  seen: Array<string | undefined>;
}

async function fakeRegistry(options: FakeOptions = {}): Promise<Fake> {
  const issued = new Set<string>();
  const fake: Fake = { srv: undefined as unknown as TestServer, tokenFetches: [], seen: [] };
  const accept = options.accept ?? ((auth, tokens) => auth !== undefined && tokens.has(auth.replace(/^Bearer /, '')));
  fake.srv = await startServer((req, res, url) => {
    if (url.pathname === '/token') {
      fake.tokenFetches.push({ url, authorization: req.headers.authorization });
      const answer = options.token?.(fake.tokenFetches.length, req) ?? {
        body: { token: `tok-${fake.tokenFetches.length}`, expires_in: 300 },
      };
      const body = answer.body as { token?: string; access_token?: string };
      for (const t of [body.token, body.access_token]) if (t !== undefined) issued.add(t);
      json(res, answer.status ?? 200, answer.body);
      return;
    }
    fake.seen.push(req.headers.authorization);
    if (!accept(req.headers.authorization, issued)) {
      const realm = options.realm?.(fake.srv) ?? `${fake.srv.origin}/token`;
      const repo = /^\/v2\/(.+)\/(manifests|blobs|tags)\//.exec(url.pathname)?.[1] ?? '';
      const errors = [{ code: 'UNAUTHORIZED', message: 'authentication required' }];
      json(res, 401, options.pad401 ? { errors, pad: 'p'.repeat(options.pad401) } : { errors }, {
        'www-authenticate': `Bearer realm="${realm}",service="test-registry",scope="repository:${repo}:pull"${options.challenge ?? ''}`,
      });
      return;
    }
    if (options.route) options.route(req, res, url);
    else json(res, 200, { path: url.pathname });
  });
  return fake;
}

const get = (u: Upstream, repository: string, path: string, headers?: Record<string, string>) =>
  u.request({ method: 'GET', repository, path, headers });

async function okBody(u: Upstream, repository: string, path: string): Promise<string> {
  const res = await get(u, repository, path);
  expect(res.status).toBe(200);
  return text(res.body);
}

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  await closeAll();
});

describe('anonymous Bearer handshake', () => {
  it('fetches one token for many sequential requests, and warm requests take one round trip', async () => {
    const fake = await fakeRegistry();
    const u = upstream({ url: fake.srv.origin });
    for (let i = 0; i < 5; i++) {
      expect(await okBody(u, 'library/alpine', '/v2/library/alpine/manifests/3.20')).toContain('manifests');
    }
    expect(fake.tokenFetches).toHaveLength(1);
    const q = fake.tokenFetches[0]!.url.searchParams;
    expect(q.get('service')).toBe('test-registry');
    expect(q.get('scope')).toBe('repository:library/alpine:pull');
    expect(fake.tokenFetches[0]!.authorization).toBeUndefined();
    // 401, retry, then four warm requests that carry the cached token up front.
    expect(fake.seen).toEqual([undefined, 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1']);
  });

  it('fetches one token for a concurrent burst', async () => {
    const fake = await fakeRegistry();
    const u = upstream({ url: fake.srv.origin });
    const bodies = await Promise.all(
      Array.from({ length: 8 }, (_, i) => okBody(u, 'library/busybox', `/v2/library/busybox/blobs/sha256:${i}`)),
    );
    expect(bodies).toHaveLength(8);
    expect(fake.tokenFetches).toHaveLength(1);
  });

  it('keeps tokens per scope and per upstream instance', async () => {
    const fake = await fakeRegistry();
    const a = upstream({ url: fake.srv.origin });
    const b = upstream({ url: fake.srv.origin });
    await okBody(a, 'one', '/v2/one/manifests/x');
    await okBody(a, 'two', '/v2/two/manifests/x');
    await okBody(b, 'one', '/v2/one/manifests/x');
    expect(fake.tokenFetches.map((f) => f.url.searchParams.get('scope'))).toEqual([
      'repository:one:pull',
      'repository:two:pull',
      'repository:one:pull',
    ]);
  });

  it('hands every connection back: one connection carries 401s, token fetches, redirects and retries', async () => {
    const big = 'm'.repeat(1024 * 1024);
    const fake = await fakeRegistry({
      pad401: 1024 * 1024,
      route: (_req, res, url) => {
        if (url.pathname.endsWith('/old')) res.writeHead(302, { location: url.pathname.replace(/old$/, 'new') }).end(big);
        else json(res, 200, { path: url.pathname });
      },
    });
    const u = upstream({ url: fake.srv.origin, connections: 1, timeouts: { headers: 2_000 } });
    for (let i = 0; i < 10; i++) {
      expect(await okBody(u, `repo${i % 3}`, `/v2/repo${i % 3}/manifests/old`)).toContain('/new');
    }
    expect(fake.tokenFetches).toHaveLength(3);
  }, 10_000); // a leaked body leaves the one connection busy and the next request queued for good

  it('accepts `access_token`', async () => {
    const fake = await fakeRegistry({ token: (n) => ({ body: { access_token: `at-${n}`, expires_in: 300 } }) });
    const u = upstream({ url: fake.srv.origin });
    await okBody(u, 'r', '/v2/r/manifests/latest');
    expect(fake.seen.at(-1)).toBe('Bearer at-1');
  });

  it('refetches once the token is about to expire', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const fake = await fakeRegistry({ token: (n) => ({ body: { token: `tok-${n}`, expires_in: 60 } }) });
    const u = upstream({ url: fake.srv.origin });
    await okBody(u, 'r', '/v2/r/manifests/latest');
    vi.setSystemTime(Date.now() + 40_000);
    await okBody(u, 'r', '/v2/r/manifests/latest');
    expect(fake.tokenFetches).toHaveLength(1);
    vi.setSystemTime(Date.now() + 15_000); // 55 s in: within the 10 s margin of a 60 s token
    await okBody(u, 'r', '/v2/r/manifests/latest');
    expect(fake.tokenFetches).toHaveLength(2);
    expect(fake.seen.at(-1)).toBe('Bearer tok-2');
  });

  it('defaults expires_in to 60 s and honours issued_at', async () => {
    const issuedAt = new Date(Date.now() - 55_000).toISOString();
    const fake = await fakeRegistry({
      token: (n) => ({ body: n === 1 ? { token: 'old', issued_at: issuedAt } : { token: `tok-${n}` } }),
    });
    const u = upstream({ url: fake.srv.origin });
    await okBody(u, 'r', '/v2/r/manifests/latest'); // 'old' is used once, but it has 5 s left: not cached
    await okBody(u, 'r', '/v2/r/manifests/latest');
    await okBody(u, 'r', '/v2/r/manifests/latest'); // tok-2 has the default 60 s: cached
    expect(fake.tokenFetches).toHaveLength(2);
    expect(fake.seen).toEqual([undefined, 'Bearer old', undefined, 'Bearer tok-2', 'Bearer tok-2']);
  });

  it('refreshes a cached token the upstream refuses, and retries once', async () => {
    let revoked = false;
    const fake = await fakeRegistry({
      accept: (auth, issued) => auth !== undefined && issued.has(auth.slice(7)) && !(revoked && auth === 'Bearer tok-1'),
    });
    const u = upstream({ url: fake.srv.origin });
    await okBody(u, 'r', '/v2/r/manifests/latest');
    revoked = true;
    await okBody(u, 'r', '/v2/r/manifests/latest');
    expect(fake.tokenFetches).toHaveLength(2);
    expect(fake.seen).toEqual([undefined, 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2']);
  });

  it('returns a second 401 as it is', async () => {
    const fake = await fakeRegistry({ accept: () => false });
    const u = upstream({ url: fake.srv.origin });
    const res = await get(u, 'private/thing', '/v2/private/thing/manifests/latest');
    expect(res.status).toBe(401);
    expect(JSON.parse(await text(res.body))).toEqual({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] });
    expect(fake.tokenFetches).toHaveLength(1);
    expect(fake.seen).toHaveLength(2);
  });

  it('asks for the scope of an insufficient_scope challenge', async () => {
    const fake = await fakeRegistry({ challenge: ',error="insufficient_scope"', realm: (s) => `${s.origin}/token` });
    const u = upstream({ url: fake.srv.origin });
    // The path names another repository than `repository`: the challenge's scope wins.
    await okBody(u, 'mine', '/v2/theirs/manifests/latest');
    expect(fake.tokenFetches[0]!.url.searchParams.get('scope')).toBe('repository:theirs:pull');
  });

  it('omits the scope for requests outside any repository', async () => {
    const fake = await fakeRegistry();
    const u = upstream({ url: fake.srv.origin });
    await okBody(u, '', '/v2/');
    expect(fake.tokenFetches[0]!.url.searchParams.has('scope')).toBe(false);
  });

  it('never forwards the caller’s own Authorization', async () => {
    const fake = await fakeRegistry();
    const u = upstream({ url: fake.srv.origin });
    await okBody(u, 'r', '/v2/r/manifests/latest');
    const res = await get(u, 'r', '/v2/r/manifests/latest', { Authorization: 'Bearer from-client' });
    await text(res.body);
    expect(fake.seen.at(-1)).toBe('Bearer tok-1');
  });
});

describe('token server failures', () => {
  it('refuses a token body over the cap, without reading it all', async () => {
    const big = 'x'.repeat(2 * 1024 * 1024);
    const fake = await fakeRegistry({ token: () => ({ body: { token: 'tok', padding: big } }) });
    const err = await rejection(get(upstream({ url: fake.srv.origin }), 'r', '/v2/r/manifests/latest'));
    expect(isOciError(err) && err.code).toBe('UNAVAILABLE');
    expect((err as Error).message).toMatch(/token response over 1048576 bytes/);
  });

  it('refuses a chunked token body over the cap', async () => {
    const srv = await startServer((req, res, url) => {
      if (url.pathname === '/token') {
        res.writeHead(200, { 'content-type': 'application/json' }); // no length: chunked
        const chunk = 'y'.repeat(64 * 1024);
        for (let i = 0; i < 20; i++) res.write(chunk);
        res.end();
        return;
      }
      json(res, 401, {}, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${(req.socket.localPort ?? 0).toString()}/token"` });
    });
    const err = await rejection(get(upstream({ url: srv.origin }), 'r', '/v2/r/manifests/latest'));
    expect((err as Error).message).toMatch(/over 1048576 bytes/);
  });

  it('maps a refusing token server, and never names the password', async () => {
    const fake = await fakeRegistry({ token: () => ({ status: 401, body: { details: 'bad credentials' } }) });
    const u = upstream({ url: fake.srv.origin, credentials: { username: 'alice', password: 's3cr3t-pw' } });
    const err = await rejection(get(u, 'r', '/v2/r/manifests/latest'));
    expect(isOciError(err) && err.code).toBe('UNAUTHORIZED');
    expect((err as Error).message).toMatch(/token server 127\.0\.0\.1 rejected the configured credentials/);
    expect(JSON.stringify(err) + String(err)).not.toMatch(/s3cr3t|czNjcjN0/);
    expect(fake.tokenFetches[0]!.authorization).toBe(`Basic ${Buffer.from('alice:s3cr3t-pw').toString('base64')}`);
  });

  it('times the token exchange out', async () => {
    const srv = await stallingTokenServer();
    const started = Date.now();
    const err = await rejection(get(upstream({ url: srv.origin, timeouts: { headers: 200 } }), 'r', '/v2/r/manifests/x'));
    expect(isOciError(err) && err.code).toBe('UNAVAILABLE');
    expect((err as Error).message).toMatch(/^upstream test token server 127\.0\.0\.1 unreachable: /);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('abandons a token exchange under way on close()', async () => {
    const srv = await stallingTokenServer();
    const u = createUpstream({ name: 'closing', url: srv.origin, timeouts: { headers: 30_000 } });
    const pending = rejection(get(u, 'r', '/v2/r/manifests/x'));
    // Not a sleep: a close() that comes before the exchange has begun fails the exchange
    // differently ("connection closed", the pool being closed), which is not what this tests.
    await srv.tokenRequested;
    const started = Date.now();
    await u.close();
    expect((await pending) as Error).toMatchObject({ code: 'UNAVAILABLE', message: 'upstream closing token server 127.0.0.1 unreachable: aborted' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('rejects a token response without a token', async () => {
    const fake = await fakeRegistry({ token: () => ({ body: { token: 'has spaces' } }) });
    const err = await rejection(get(upstream({ url: fake.srv.origin }), 'r', '/v2/r/manifests/latest'));
    expect((err as Error).message).toMatch(/sent no usable token/);
  });
});

describe('realm check', () => {
  it('refuses a realm on another host and never contacts it', async () => {
    const realmServer = await fakeRegistry();
    const fake = await fakeRegistry({ realm: () => `http://localhost:${realmServer.srv.port}/token` });
    const u = upstream({ url: fake.srv.origin, credentials: { username: 'u', password: 'p' } });
    const err = await rejection(get(u, 'r', '/v2/r/manifests/latest'));
    expect(isOciError(err) && err.code).toBe('DENIED');
    expect((err as Error).message).toMatch(/refusing token realm localhost/);
    expect(realmServer.tokenFetches).toHaveLength(0);
  });

  it('accepts a realm within the upstream’s registrable domain, refuses one outside it', async () => {
    // Names that resolve nowhere: every connection goes to 127.0.0.1 whatever the host.
    const dispatcher = new Agent({
      connect: {
        lookup: ((_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) =>
          opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as LookupFunction,
      },
    });
    try {
      let realmHost = 'auth.example.test';
      const fake = await fakeRegistry({ realm: (s) => `http://${realmHost}:${s.port}/token` });
      const u = upstream({ url: `http://registry.example.test:${fake.srv.port}`, dispatcher });
      await okBody(u, 'r', '/v2/r/manifests/latest');
      expect(fake.tokenFetches).toHaveLength(1);

      realmHost = 'auth.evil.test';
      const err = await rejection(get(u, 'other', '/v2/other/manifests/latest'));
      expect((err as Error).message).toMatch(/refusing token realm auth\.evil\.test/);
      expect(fake.tokenFetches).toHaveLength(1);
    } finally {
      await dispatcher.close();
    }
  });

  it('checks hosts, schemes and credentials over plain http', () => {
    const hub = new URL('https://registry-1.docker.io');
    expect(checkRealm('https://auth.docker.io/token', hub, 'hub', true).hostname).toBe('auth.docker.io');
    expect(checkRealm('https://registry-1.docker.io:8443/t', hub, 'hub', true).port).toBe('8443');
    expect(() => checkRealm('https://auth.docker.io.evil.com/token', hub, 'hub', false)).toThrow(/refusing token realm/);
    expect(() => checkRealm('ftp://auth.docker.io/token', hub, 'hub', false)).toThrow(/scheme ftp:/);
    expect(() => checkRealm('https://u:p@auth.docker.io/token', hub, 'hub', false)).toThrow(/user info/);
    expect(() => checkRealm('not a url', hub, 'hub', false)).toThrow(/invalid token realm/);
    // Anonymous over plain http is allowed; credentials are not, from an https upstream.
    expect(checkRealm('http://auth.docker.io/token', hub, 'hub', false).protocol).toBe('http:');
    expect(() => checkRealm('http://auth.docker.io/token', hub, 'hub', true)).toThrow(/plain-http/);
    expect(checkRealm('http://auth.local.test/token', new URL('http://reg.local.test'), 'l', true).protocol).toBe('http:');
    // Private suffixes are their own sites; IP addresses match only themselves.
    const heroku = new URL('https://mine.herokuapp.com');
    expect(() => checkRealm('https://theirs.herokuapp.com/token', heroku, 'h', false)).toThrow(/refusing/);
    const ip = new URL('http://10.0.0.1:5000');
    expect(checkRealm('http://10.0.0.1:5001/token', ip, 'ip', false).port).toBe('5001');
    expect(() => checkRealm('http://10.0.0.2/token', ip, 'ip', false)).toThrow(/refusing token realm 10\.0\.0\.2/);
  });
});

describe('basic credentials', () => {
  const expected = `Basic ${Buffer.from('bob:hunter2').toString('base64')}`;

  it('answers a Basic challenge, then sends credentials up front', async () => {
    const seen: Array<string | undefined> = [];
    const srv = await startServer((req, res, url) => {
      seen.push(req.headers.authorization);
      if (req.headers.authorization !== expected) {
        json(res, 401, {}, { 'www-authenticate': 'Basic realm="registry"' });
      } else json(res, 200, { path: url.pathname });
    });
    const u = upstream({ url: srv.origin, credentials: { username: 'bob', password: 'hunter2' } });
    await okBody(u, 'r', '/v2/r/manifests/a');
    await okBody(u, 'r', '/v2/r/manifests/b');
    expect(seen).toEqual([undefined, expected, expected]);
  });

  it('returns the 401 when the credentials are wrong, or when none are configured', async () => {
    const srv = await startServer((_req, res) => json(res, 401, {}, { 'www-authenticate': 'Basic realm="registry"' }));
    const withCreds = await get(upstream({ url: srv.origin, credentials: { username: 'bob', password: 'x' } }), 'r', '/v2/');
    expect(withCreds.status).toBe(401);
    await text(withCreds.body);
    const anonymous = await get(upstream({ url: srv.origin }), 'r', '/v2/');
    expect(anonymous.status).toBe(401);
    await text(anonymous.body);
  });
});

describe('rotated secrets (passwordFile, tokenFile)', () => {
  it('exchanges the current password, and does not send a token the old one earned', async () => {
    const fake = await fakeRegistry();
    let password = 'old-pw';
    const u = upstream({ url: fake.srv.origin, credentials: () => ({ username: 'bob', password }) });
    await okBody(u, 'r', '/v2/r/manifests/a');
    password = 'new-pw';
    await okBody(u, 'r', '/v2/r/manifests/b');
    await okBody(u, 'r', '/v2/r/manifests/c');
    expect(fake.tokenFetches.map((f) => f.authorization)).toEqual([
      `Basic ${Buffer.from('bob:old-pw').toString('base64')}`,
      `Basic ${Buffer.from('bob:new-pw').toString('base64')}`,
    ]);
    expect(fake.seen).toEqual([undefined, 'Bearer tok-1', undefined, 'Bearer tok-2', 'Bearer tok-2']);
  });

  it('sends the current static token on every request', async () => {
    const seen: Array<string | undefined> = [];
    const srv = await startServer((req, res, url) => {
      seen.push(req.headers.authorization);
      json(res, 200, { path: url.pathname });
    });
    let token = 'first-token';
    const u = upstream({ url: srv.origin, token: () => token });
    await okBody(u, 'r', '/v2/r/manifests/a');
    token = 'second-token';
    await okBody(u, 'r', '/v2/r/manifests/a');
    expect(seen).toEqual(['Bearer first-token', 'Bearer second-token']);
  });
});
