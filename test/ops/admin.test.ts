/**
 * The admin API and commands against a real docker-registry: warm two images that share a
 * layer over the API, list them, purge one, and with the registry stopped the other still
 * pulls whole with skopeo. The API refuses a missing or wrong token and is absent unless
 * enabled; `oci-mirror gc` reconciles records whose content is gone and evicts under maxBytes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsStorage } from '../../adapters/fs/index.js';
import { ConfigError, parseConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { buildImage, pushImage, pushTinyImage, tarLayer, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { spawnTracked, terminate, terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const TOKEN = 'admin-token-0123456789abcdef';
const CLI = join(process.cwd(), 'src', 'cli.ts');

async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawnTracked(process.execPath, ['--import', 'tsx', CLI, ...args], { keepAll: true });
  const timer = setTimeout(() => void terminate(proc, 2_000), 40_000);
  const exit = await proc.exited.finally(() => clearTimeout(timer));
  return { code: exit.code, stdout: proc.stdout(), stderr: proc.stderr() };
}

async function admin(
  m: TestMirror,
  method: 'GET' | 'POST',
  path: string,
  { body, token = TOKEN }: { body?: unknown; token?: string | null } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${m.url}/_mirror/admin${path}`, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  const json = res.headers.get('content-type')?.startsWith('application/json') ?? false;
  return { status: res.status, body: json ? (JSON.parse(text) as Record<string, unknown>) : { text }, headers: res.headers };
}

describe('admin config', () => {
  it('is off by default and needs a token when enabled', () => {
    expect(parseConfig({}).admin).toEqual({ enabled: false });
    expect(() => parseConfig({ admin: { enabled: true } })).toThrow(/admin\.token: an enabled admin API needs a token/);
    expect(() => parseConfig({ admin: { enabled: true, token: 'short' } })).toThrow(/admin\.token: must be at least 16 characters/);
    expect(() => parseConfig({ admin: { enabled: true, token: TOKEN, tokenEnv: 'X' } })).toThrow(/give one of token, tokenFile, tokenEnv/);
  });

  it('fails start-up with a ConfigError when the token file cannot be read', async () => {
    const start = startServer(parseConfig({ listen: '127.0.0.1:0', admin: { enabled: true, tokenFile: '/nonexistent/admin-token' } }));
    await expect(start).rejects.toThrow(ConfigError);
    await expect(start).rejects.toThrow('admin.tokenFile: cannot read /nonexistent/admin-token: ENOENT');
  });
});

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('admin: ls, purge, gc and the HTTP API', () => {
  let registry: RunningRegistry | undefined;
  let mirror: TestMirror | undefined;
  const others: TestMirror[] = [];
  let work: string;
  let a: Fixture;
  let b: Fixture;
  let shared: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-admin-'));
    registry = await startRegistry();
    const base = await tarLayer([{ path: 'etc/os-release', content: 'ID=shared-base\n' }]);
    shared = base.digest;
    a = await pushImage(registry, 'admin/a', 'v1', buildImage('oci', [base, await tarLayer([{ path: 'app/a', content: 'a\n' }])]));
    b = await pushImage(registry, 'admin/b', 'v1', buildImage('oci', [base, await tarLayer([{ path: 'app/b', content: 'b\n' }])]));
    mirror = await startTestMirror(registry.url, { cache: { tagTtl: '1ms' }, admin: { enabled: true, token: TOKEN } });
  });

  afterAll(async () => {
    await Promise.allSettled([mirror?.dispose(), ...others.map((m) => m.dispose()), registry?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('refuses a request without the token or with a wrong one (401), before any route', async () => {
    for (const token of [null, 'wrong-token-0123456789abcdef', '']) {
      for (const [method, path] of [['GET', '/images'], ['POST', '/gc'], ['GET', '/no-such-route']] as const) {
        const r = await admin(mirror!, method, path, { token });
        expect(r.status, `${method} ${path} with ${token}`).toBe(401);
        expect(r.body).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.any(String) } });
        expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
      }
    }
    const basic = await fetch(`${mirror!.url}/_mirror/admin/images`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } });
    expect(basic.status).toBe(401);
  });

  it('answers errors as JSON', async () => {
    expect(await admin(mirror!, 'GET', '/nothing')).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    expect(await admin(mirror!, 'GET', '/purge')).toMatchObject({ status: 405, body: { error: { code: 'METHOD_NOT_ALLOWED' } } });
    expect(await admin(mirror!, 'POST', '/purge', { body: {} })).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST' } } });
    expect(await admin(mirror!, 'POST', '/purge', { body: { reference: 'admin/none' } })).toMatchObject({
      status: 404,
      body: { error: { code: 'NAME_UNKNOWN', message: 'nothing is cached for registry.test/admin/none' } },
    });
    const bad = await fetch(`${mirror!.url}/_mirror/admin/warm`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{not json' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: { code: 'BAD_REQUEST', message: 'the body is not JSON' } });
  });

  it('is absent when not enabled (404)', async () => {
    const plain = await startTestMirror(registry!.url);
    others.push(plain);
    for (const token of [null, TOKEN]) {
      expect((await admin(plain, 'GET', '/images', { token })).status).toBe(404);
      expect((await admin(plain, 'POST', '/gc', { token })).status).toBe(404);
    }
  });

  it('warms two images over the API and lists them', async () => {
    const warm = await admin(mirror!, 'POST', '/warm', { body: { images: [a.ref, b.ref, 'admin/missing:v1'] } });
    expect(warm.status).toBe(200);
    expect(warm.body).toEqual({
      results: [
        expect.objectContaining({ image: a.ref, digest: a.digest, blobs: 3, fetched: a.blobs.reduce((n, x) => n + x.size, 0) }),
        // The shared layer came with the first image.
        expect.objectContaining({ image: b.ref, digest: b.digest, blobs: 3, fetched: b.blobs.filter((x) => x.digest !== shared).reduce((n, x) => n + x.size, 0) }),
      ],
      failures: [{ image: 'admin/missing:v1', error: expect.stringMatching(/^MANIFEST_UNKNOWN: /) }],
    });
    const ls = await admin(mirror!, 'GET', '/images');
    expect(ls.status).toBe(200);
    expect(ls.body.images).toEqual([
      expect.objectContaining({ ref: 'registry.test/admin/a:v1', digest: a.digest, complete: true, lastAccess: expect.any(Number) }),
      expect.objectContaining({ ref: 'registry.test/admin/b:v1', digest: b.digest, complete: true }),
    ]);
  });

  it('purges one of two images that share a layer, keeping the layer', async () => {
    const r = await admin(mirror!, 'POST', '/purge', { body: { reference: 'admin/a:v1' } });
    expect(r.status).toBe(200);
    const unique = a.blobs.filter((x) => x.digest !== shared);
    expect(r.body).toEqual({
      tags: ['registry.test/admin/a:v1'],
      manifests: 1,
      blobs: unique.length,
      bytes: a.size + unique.reduce((n, x) => n + x.size, 0),
      kept: 1,
    });
    const store = fsStorage({ path: mirror!.dataDir, fsync: false });
    expect(await store.blobs.stat(shared)).toBeDefined();
    for (const x of [a, ...unique]) expect(await store.blobs.stat(x.digest)).toBeUndefined();
    const ls = await admin(mirror!, 'GET', '/images');
    expect((ls.body.images as Array<{ ref: string }>).map((i) => i.ref)).toEqual(['registry.test/admin/b:v1']);
  });

  describe('with the registry stopped', () => {
    beforeAll(async () => {
      await registry!.stop();
    });

    it('still serves the image that shared a layer with the purged one', async () => {
      const dir = join(work, 'pull-b');
      await skopeoCopy(`${mirror!.host}/${b.ref}`, dir, { timeoutMs: 30_000 });
      await verifyDirPull(dir, b);
      await expect(skopeoCopy(`${mirror!.host}/${a.ref}`, join(work, 'pull-a'), { timeoutMs: 30_000 })).rejects.toThrow();
    });

    it('gc over the API reconciles a tag whose manifest bytes are gone', async () => {
      // The bytes of b's manifest go behind the mirror's back, as a crash between two deletes would leave it.
      await fsStorage({ path: mirror!.dataDir, fsync: false }).blobs.delete(b.digest);
      const r = await admin(mirror!, 'POST', '/gc');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ reconciled: { manifests: 1, access: expect.any(Number), tags: 1, links: 1 }, eviction: false, evicted: 0, bytes: 0, more: false, elsewhere: false });
      expect((await admin(mirror!, 'GET', '/images')).body.images).toEqual([]);
    });
  });
});

describe.skipIf(!requireTools(['docker-registry']))('oci-mirror ls, purge and gc on the command line', () => {
  let registry: RunningRegistry | undefined;
  let work: string;
  let config: string;
  let tiny: Fixture;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-admin-cli-'));
    registry = await startRegistry();
    tiny = await pushTinyImage(registry, { name: 'cli/tiny', tag: 'v1' });
    config = join(work, 'mirror.yaml');
    const lines = [
      `storage: { type: fs, path: ${JSON.stringify(join(work, 'data'))}, fsync: false }`,
      'upstreams:',
      `  - name: registry.test`,
      `    url: ${registry.url}`,
      'cache: { maxBytes: 1 }',
      '',
    ];
    await writeFile(config, lines.join('\n'));
  });

  afterAll(async () => {
    await registry?.destroy();
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('exits 2 for a config it cannot read', async () => {
    for (const command of ['ls', 'purge', 'gc']) {
      const r = await cli([command, '--config', join(work, 'missing.yaml')]);
      expect(r.code, command).toBe(2);
      expect(r.stderr).toContain('cannot read config file');
    }
  });

  it('purges a tag, and says when nothing matches', async () => {
    expect((await cli(['warm', '--config', config, tiny.ref])).code).toBe(0);
    const missing = await cli(['purge', '--config', config, 'cli/other']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('oci-mirror purge cli/other: NAME_UNKNOWN: nothing is cached for registry.test/cli/other\n');
    const r = await cli(['purge', '--config', config, tiny.ref]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^purged ${tiny.ref}: 1 tag, 1 manifest, ${tiny.blobs.length} blobs, [\\d.]+ kB\\n$`));
    expect((await cli(['ls', '--config', config])).stdout).toBe('nothing is cached\n');
  });

  it('gc evicts what maxBytes has no room for, in one pass', async () => {
    expect((await cli(['warm', '--config', config, tiny.ref])).code).toBe(0);
    const r = await cli(['gc', '--config', config, '--json']);
    expect(r.code).toBe(0);
    // The manifest goes first; its config and layer are then free to go in the same pass.
    expect(JSON.parse(r.stdout)).toEqual({
      reconciled: { manifests: 0, access: 0, tags: 0, links: 0 },
      eviction: true,
      evicted: 1 + tiny.blobs.length,
      bytes: tiny.size + tiny.blobs.reduce((n, x) => n + x.size, 0),
      more: false,
      elsewhere: false,
    });
    expect((await cli(['ls', '--config', config])).stdout).toBe('nothing is cached\n');
  });
});
