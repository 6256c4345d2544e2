/**
 * Tag lists and negative answers against real registries: two docker-registry upstreams
 * behind counting proxies, each holding `shared/app` with different tags. A tag list is
 * answered from the cache within `tagTtl`, served stale with the manifests' Warning when its
 * upstream is stopped, never through the other upstream's route, and survives a restart; a
 * loop of pulls of a missing tag costs one upstream request per `negativeTtl`.
 *
 * The mirror's clock is the test's own (only Date is faked: I/O keeps real timers), so that no
 * assertion depends on how fast a busy machine runs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startCountingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { raw, type RawResponse } from '../helpers/http.js';
import { pushTinyImage } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools } from '../helpers/tools.js';

const TAG_TTL_MS = 60_000;
const NEGATIVE_TTL_MS = 10_000;
const STALE = '110 - "Response is Stale"';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const tagsOf = (r: RawResponse) => (JSON.parse(r.body.toString()) as { name: string; tags: string[] });
const errorCode = (r: RawResponse) => (JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code;
/** Lets `ms` pass on the mirror's clock. */
const later = (ms: number) => vi.setSystemTime(Date.now() + ms);

describe.skipIf(!requireTools(['docker-registry']))('tag lists and negative answers with real upstreams', () => {
  let a: RunningRegistry | undefined;
  let b: RunningRegistry | undefined;
  let viaA: CountingProxy | undefined;
  let viaB: CountingProxy | undefined;
  let mirror: TestMirror | undefined;
  const extra: TestMirror[] = [];

  const config = () => ({
    upstreams: [
      { name: 'registry-a.test', url: viaA!.url, default: true, timeouts: { connect: '2s', headers: '10s', body: '10s' } },
      { name: 'registry-b.test', url: viaB!.url, timeouts: { connect: '2s', headers: '10s', body: '10s' } },
    ],
    cache: { tagTtl: TAG_TTL_MS / 1000, negativeTtl: NEGATIVE_TTL_MS / 1000 },
  });
  const get = (path: string, base = mirror!.url) => raw(`${base}${path}`, { headers: { Accept: OCI_MANIFEST } });
  const listsAskedOf = (proxy: CountingProxy, repository = 'shared/app') => proxy.count('GET', `/v2/${repository}/tags/list`);

  beforeAll(async () => {
    [a, b] = await Promise.all([startRegistry(), startRegistry()]);
    for (const tag of ['v1', 'v2', 'v3']) await pushTinyImage(a, { name: 'shared/app', tag });
    await pushTinyImage(a, { name: 'only/a', tag: 'v1' });
    await pushTinyImage(b, { name: 'shared/app', tag: 'b1' });
    [viaA, viaB] = await Promise.all([startCountingProxy(a.url), startCountingProxy(b.url)]);
    vi.useFakeTimers({ toFake: ['Date'] });
    mirror = await startTestMirror(viaA.url, config());
  }, 60_000);

  afterEach(() => {
    viaA?.reset();
    viaB?.reset();
  });

  afterAll(async () => {
    vi.useRealTimers();
    for (const m of extra) await m.close(1000);
    await Promise.allSettled([mirror?.dispose(), viaA?.close(), viaB?.close()]);
    await Promise.allSettled([a?.destroy(), b?.destroy()]);
    await terminateAll();
  });

  it('answers a tag list from the cache within tagTtl, and asks again after it', async () => {
    const first = await get('/v2/shared/app/tags/list');
    expect(first.status).toBe(200);
    expect(tagsOf(first)).toEqual({ name: 'shared/app', tags: ['v1', 'v2', 'v3'] });
    expect(first.headers['x-mirror-cache']).toBe('MISS');
    for (let i = 0; i < 5; i++) {
      const again = await get('/v2/shared/app/tags/list');
      expect(tagsOf(again).tags).toEqual(['v1', 'v2', 'v3']);
      expect(again.headers['x-mirror-cache']).toBe('HIT');
    }
    expect(listsAskedOf(viaA!)).toBe(1);
    later(TAG_TTL_MS);
    const revalidated = await get('/v2/shared/app/tags/list');
    expect(revalidated.headers['x-mirror-cache']).toBe('REVALIDATED');
    expect(listsAskedOf(viaA!)).toBe(2);
  });

  it('caches each query apart, and answers another route to the same repository under the name it used', async () => {
    // docker-registry 2.8 ignores n (pagination came with distribution 3): Link rewriting on
    // cached pages is tested with a paginating upstream in middleware/list-proxy/index.test.ts.
    const page = await get('/v2/shared/app/tags/list?n=2');
    expect(page.status).toBe(200);
    expect(page.headers['x-mirror-cache']).toBe('MISS');
    expect((await get('/v2/shared/app/tags/list?n=2')).headers['x-mirror-cache']).toBe('HIT');
    const prefixed = await get('/v2/registry-a.test/shared/app/tags/list?n=2');
    expect(prefixed.headers['x-mirror-cache']).toBe('HIT');
    expect(tagsOf(prefixed)).toEqual({ name: 'registry-a.test/shared/app', tags: ['v1', 'v2', 'v3'] });
    expect(listsAskedOf(viaA!)).toBe(1);
  });

  it('never serves one upstream’s cached list through another upstream’s route', async () => {
    await get('/v2/only/a/tags/list');
    for (const path of ['/v2/registry-b.test/shared/app/tags/list', '/v2/shared/app/tags/list?ns=registry-b.test']) {
      const r = await get(path);
      expect(r.status, path).toBe(200);
      expect(tagsOf(r).tags, path).toEqual(['b1']);
    }
    const missing = await get('/v2/registry-b.test/only/a/tags/list');
    expect(missing.status).toBe(404);
    expect(errorCode(missing)).toBe('NAME_UNKNOWN');
    expect(listsAskedOf(viaB!)).toBe(1);
    expect(listsAskedOf(viaB!, 'only/a')).toBe(1);
  });

  it('serves the list stale with the Warning header while its upstream is stopped, and only its own', async () => {
    await get('/v2/registry-b.test/shared/app/tags/list');
    await a!.stop();
    later(TAG_TTL_MS);
    for (const path of ['/v2/shared/app/tags/list', '/v2/shared/app/tags/list?n=2']) {
      const stale = await get(path);
      expect(stale.status, path).toBe(200);
      expect(stale.headers.warning, path).toBe(STALE);
      expect(stale.headers['x-mirror-cache'], path).toBe('STALE');
    }
    expect(tagsOf(await get('/v2/shared/app/tags/list')).tags).toEqual(['v1', 'v2', 'v3']);
    // The upstream was asked (the proxy in front of it answered 502) before the stale answer.
    expect(listsAskedOf(viaA!)).toBeGreaterThan(0);
    // Never cached: nothing stale to serve.
    const cold = await get('/v2/shared/app/tags/list?n=1');
    expect(cold.status).toBeGreaterThanOrEqual(500);
    // The other upstream, still up, answers its own list and not the stale one of A.
    const other = await get('/v2/registry-b.test/shared/app/tags/list');
    expect(tagsOf(other).tags).toEqual(['b1']);
    expect(other.headers.warning).toBeUndefined();
  });

  it('serves the cached list from the shared store after a restart, while the upstream is still down', async () => {
    const second = await startTestMirror(viaA!.url, config(), { dataDir: mirror!.dataDir });
    extra.push(second);
    const r = await get('/v2/shared/app/tags/list', second.url);
    expect(r.status).toBe(200);
    expect(tagsOf(r).tags).toEqual(['v1', 'v2', 'v3']);
    expect(r.headers.warning).toBe(STALE);
  });

  it('answers a loop of misses on a missing tag with one upstream request per negativeTtl', async () => {
    await a!.restart();
    for (let i = 0; i < 20; i++) {
      const r = await get('/v2/shared/app/manifests/missing');
      expect(r.status).toBe(404);
      expect(errorCode(r)).toBe('MANIFEST_UNKNOWN');
      // The access log's cache field comes from this header.
      expect(r.headers['x-mirror-cache']).toBe(i === 0 ? undefined : 'NEGATIVE');
    }
    expect(viaA!.count('*', '/manifests/missing')).toBe(1);
    // Per (upstream, repository, tag): another tag, or the same one of another repository, is asked.
    expect((await get('/v2/only/a/manifests/missing')).status).toBe(404);
    expect(viaA!.count('*', '/manifests/missing')).toBe(2);
    // A tag pushed meanwhile is visible once negativeTtl has passed.
    await pushTinyImage(a!, { name: 'shared/app', tag: 'missing' });
    expect((await get('/v2/shared/app/manifests/missing')).status).toBe(404);
    later(NEGATIVE_TTL_MS);
    const found = await get('/v2/shared/app/manifests/missing');
    expect(found.status).toBe(200);
    // Cached now: the memory of the 404 is gone with it.
    for (let i = 0; i < 3; i++) expect((await get('/v2/shared/app/manifests/missing')).status).toBe(200);
  });
  it('serves a cached list only to clients the auth rules let pull it', async () => {
    const [team, other] = ['team-token-0123456789', 'other-token-0123456789'];
    const guarded = await startTestMirror(
      viaA!.url,
      {
        ...config(),
        auth: {
          tokens: [
            { name: 'team', token: team },
            { name: 'other', token: other },
          ],
          rules: [{ users: ['team'], repositories: ['registry-a.test/shared/*'] }],
        },
      },
      { dataDir: mirror!.dataDir },
    );
    extra.push(guarded);
    const asked = listsAskedOf(viaA!);
    const list = (token?: string) =>
      raw(`${guarded.url}/v2/shared/app/tags/list`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    const allowed = await list(team);
    expect(allowed.status).toBe(200);
    expect(tagsOf(allowed).tags).toEqual(expect.arrayContaining(['v1', 'v2', 'v3']));
    expect((await list(other)).status).toBe(403);
    expect((await list()).status).toBe(401);
    expect(listsAskedOf(viaA!)).toBeLessThanOrEqual(asked + 1);
  });
});
