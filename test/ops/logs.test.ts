import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REDACT_PATHS, createLogger } from '../../src/logging/index.js';
import { parseConfig } from '../../src/config.js';
import { startServer, type MirrorServer } from '../../src/server.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';

const PASSWORD = 'hunter2-config-password';
const BEARER = 'client-bearer-secret-0xC0FFEE';
const SECRETS = [PASSWORD, BEARER, Buffer.from(`robot:${PASSWORD}`).toString('base64')];

interface Line {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function capture() {
  const text: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text.push(chunk.toString());
      cb();
    },
  });
  const lines = () => text.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
  return { stream, text, lines };
}

let upstream: FakeUpstream;
let server: MirrorServer;
let dataDir: string;
let log: ReturnType<typeof capture>;

beforeEach(async () => {
  upstream = await startFakeUpstream();
  dataDir = await mkdtemp(join(tmpdir(), 'oci-mirror-logs-'));
  log = capture();
  server = await startServer(
    parseConfig({
      listen: '127.0.0.1:0',
      storage: { type: 'fs', path: dataDir, fsync: false },
      upstreams: [{ name: 'registry.test', url: upstream.url, username: 'robot', password: PASSWORD }],
    }),
    { logger: createLogger({ level: 'trace', destination: log.stream }) },
  );
});
afterEach(async () => {
  await server.close(1000);
  await upstream.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('logs', () => {
  it('say who pulled what: client address (X-Forwarded-For from trusted proxies only), user, User-Agent, digest and bytes', async () => {
    const lines = capture();
    const audited = await startServer(
      parseConfig({
        listen: '127.0.0.1:0',
        storage: { type: 'fs', path: join(dataDir, 'audited'), fsync: false },
        upstreams: [{ name: 'registry.test', url: upstream.url }],
        auth: { tokens: [{ name: 'ci-bot', token: BEARER }] },
        trustedProxies: ['127.0.0.0/8'],
      }),
      { logger: createLogger({ level: 'info', destination: lines.stream }) },
    );
    try {
      const data = randomBytes(5_000);
      const d = upstream.addBlob(data);
      const headers = { Authorization: `Bearer ${BEARER}`, 'User-Agent': 'containerd/1.7.24', 'X-Forwarded-For': '203.0.113.9' };
      expect((await raw(`${audited.url}/v2/team/app/blobs/${d}`, { headers })).status).toBe(200);
      // From this server itself, not a trusted proxy: the header is the client's word, and ignored.
      expect((await raw(`${server.url}/v2/team/app/blobs/${d}`, { headers: { 'X-Forwarded-For': '203.0.113.9' } })).status).toBe(200);
      await waitFor(() => lines.lines().some((l) => l.msg === 'request') && log.lines().some((l) => l.msg === 'request' && l.path !== '/v2/'));
      expect(lines.lines().find((l) => l.msg === 'request')).toMatchObject({
        client: '203.0.113.9',
        user: 'ci-bot',
        userAgent: 'containerd/1.7.24',
        digest: d,
        bytes: data.length,
        status: 200,
      });
      expect(log.lines().find((l) => l.msg === 'request')).toMatchObject({ client: '127.0.0.1', digest: d });
      expect(lines.text.join('')).not.toContain(BEARER);
    } finally {
      await audited.close(1000);
    }
  });

  it('never writes a credential, from the config or from a request, in any line', async () => {
    const auth = { Authorization: `Bearer ${BEARER}` };
    const d = upstream.addBlob(randomBytes(10_000));
    upstream.addManifest('team/app', '1.0', { schemaVersion: 2, layers: [{ digest: d }] });
    await raw(`${server.url}/v2/team/app/manifests/1.0`, { headers: auth });
    await raw(`${server.url}/v2/team/app/blobs/${d}`, { headers: auth });
    await raw(`${server.url}/v2/team/app/manifests/missing`, { headers: auth });
    upstream.failWith = 500;
    const failed = await raw(`${server.url}/v2/team/app/blobs/${upstream.addBlob(randomBytes(10))}`, { headers: auth });
    expect(failed.status).toBeGreaterThanOrEqual(500);
    await waitFor(() => log.lines().filter((l) => l.msg === 'request').length === 4);

    const all = log.text.join('');
    for (const secret of SECRETS) expect(all).not.toContain(secret);
    // The lines that could have carried them are there, redacted.
    const config = log.lines().find((l) => l.msg === 'config') as { config: { upstreams: Array<{ password: string }> } } | undefined;
    expect(config?.config.upstreams[0]!.password).toBe('[Redacted]');
    expect(log.lines().some((l) => l.msg === 'request failed' && l.err)).toBe(true);
  });

  it('redacts credentials wherever the fixed paths find them', () => {
    const out = capture();
    const logger = createLogger({ level: 'info', destination: out.stream });
    logger.info({ req: { headers: { authorization: `Bearer ${BEARER}`, 'proxy-authorization': BEARER, cookie: BEARER } } }, 'a');
    logger.info({ err: { response: { headers: { authorization: BEARER } } } }, 'b');
    logger.info({ upstream: { credentials: { username: 'robot', password: PASSWORD } }, token: BEARER }, 'c');
    logger.child({ headers: { authorization: BEARER } }).info('d');
    logger.info({ storage: { url: `redis://user:${PASSWORD}@cache:6379/0` } }, 'e');
    logger.info({ config: { upstreams: [{ proxy: `http://user:${PASSWORD}@proxy:3128` }] } }, 'f');
    expect(out.text.join('')).not.toMatch(new RegExp(`${PASSWORD}|${BEARER}`));
    const f = out.lines().find((l) => l.msg === 'f') as unknown as { config: { upstreams: Array<{ proxy: string }> } };
    expect(f.config.upstreams[0]!.proxy).toContain('@proxy:3128');
    const e = out.lines().find((l) => l.msg === 'e') as unknown as { storage: { url: string } };
    // A URL keeps where it points.
    expect(e.storage.url).toContain('@cache:6379/0');
  });

  it('spells every redaction path out: a leading wildcard would walk every key of every line', () => {
    expect(REDACT_PATHS.filter((p) => p.startsWith('*'))).toEqual([]);
    expect(REDACT_PATHS.length).toBeGreaterThan(50);
  });

  it('logs one access line per request with reqId, upstream, repo and cache result bound', async () => {
    const data = randomBytes(5000);
    const d = upstream.addBlob(data);
    const res = await raw(`${server.url}/v2/team/app/blobs/${d}?ns=registry.test&secret=x`, { headers: { 'X-Request-Id': 'pull-42.a' } });
    expect(res.headers['x-request-id']).toBe('pull-42.a');
    await waitFor(() => log.lines().some((l) => l.msg === 'request'));
    const access = log.lines().filter((l) => l.msg === 'request');
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({
      reqId: 'pull-42.a',
      upstream: 'registry.test',
      repo: 'team/app',
      method: 'GET',
      path: `/v2/team/app/blobs/${d}`,
      status: 200,
      bytes: data.length,
      cache: 'MISS',
    });
    expect(typeof access[0]!.durationMs).toBe('number');
    // Bound once: the keys appear once in the JSON line, not repeated by nested children.
    const jsonLine = log.text.join('').split('\n').find((l) => l.includes('"msg":"request"'))!;
    expect(jsonLine.match(/"reqId"/g)).toHaveLength(1);
    expect(jsonLine.match(/"repo"/g)).toHaveLength(1);
  });

  it('logs probes, scrapes and status polls at debug while they succeed, pulls at info', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/_mirror/status.json', '/v2/']) expect((await raw(`${server.url}${path}`)).status).toBe(200);
    await raw(`${server.url}/v2/team/app/manifests/missing`);
    await waitFor(() => log.lines().filter((l) => l.msg === 'request').length === 6);
    const levels = Object.fromEntries(log.lines().filter((l) => l.msg === 'request').map((l) => [l.path as string, l.level]));
    expect(levels).toEqual({ '/healthz': 20, '/readyz': 20, '/metrics': 20, '/_mirror/status.json': 20, '/v2/': 30, '/v2/team/app/manifests/missing': 30 });
  });

  it('replaces a request id that is not sane', async () => {
    for (const bad of ['has spaces', 'x'.repeat(200), '"quoted"', '{json}']) {
      const res = await raw(`${server.url}/healthz`, { headers: { 'X-Request-Id': bad } });
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
    await waitFor(() => log.lines().filter((l) => l.msg === 'request').length === 4);
    expect(log.text.join('')).not.toContain('has spaces');
  });
});
