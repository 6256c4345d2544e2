/**
 * An upstream's `allow` and `deny`: a repository they leave out answers 404 NAME_UNKNOWN by
 * every route, and nothing about it reaches any upstream, not even from warm-up or prefetch,
 * and not when it was cached before it was denied.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMirror } from '../../middleware/mirror/index.js';
import { warmImages } from '../../src/admin/warm.js';
import { purge } from '../../src/admin/purge.js';
import { parseConfig } from '../../src/config.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw } from '../helpers/http.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const ACCEPT = { Accept: `${OCI}, ${INDEX}` };

const errorCode = (r: { body: Buffer }) => (JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code;

describe('repository filters', () => {
  let up: FakeUpstream;
  const mirrors: TestMirror[] = [];
  let blob: string;
  let image: string;
  let index: string;

  const start = async (filters: { allow?: string[]; deny?: string[] } = {}, dataDir?: string) => {
    const m = await startTestMirror(up.url, { upstreams: [{ name: 'docker.io', url: up.url, ...filters }] }, { dataDir });
    mirrors.push(m);
    return m;
  };

  beforeEach(async () => {
    up = await startFakeUpstream();
    blob = up.addBlob(Buffer.from('layer bytes'));
    const manifest = { schemaVersion: 2, mediaType: OCI, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: blob, size: 11 }, layers: [] };
    for (const repo of ['library/nginx', 'evil/app', 'team/secret', 'team/app']) image = up.addManifest(repo, '1', manifest);
    const child = { mediaType: OCI, digest: image, size: Buffer.byteLength(JSON.stringify(manifest)), platform: { os: 'linux', architecture: 'arm64' } };
    index = up.addManifest('evil/app', 'multi', { schemaVersion: 2, mediaType: INDEX, manifests: [child] }, INDEX);
  });
  afterEach(async () => {
    await Promise.all(mirrors.splice(0).map((m) => m.dispose()));
    await up.close();
  });

  it('refuses a repository it does not allow, or denies, by every route, without a single upstream request', async () => {
    const m = await start({ allow: ['library/*', 'team/**'], deny: ['team/secret'] });
    const paths = (name: string) => [
      `${name}/manifests/1`,
      `${name}/manifests/${image}`,
      `${name}/blobs/${blob}`,
      `${name}/tags/list`,
      `${name}/referrers/${image}`,
    ];
    const refused = [
      ...paths('evil/app'),
      ...paths('docker.io/evil/app'),
      ...paths('evil/app').map((p) => `${p}?ns=docker.io`),
      ...paths('team/secret'),
      ...paths('docker.io/team/secret').map((p) => `${p}?ns=registry-1.docker.io`),
    ];
    for (const path of refused) {
      for (const method of ['GET', 'HEAD']) {
        const res = await raw(`${m.url}/v2/${path}`, { method, headers: ACCEPT });
        expect([path, method, res.status]).toEqual([path, method, 404]);
        if (method === 'GET') expect(errorCode(res)).toBe('NAME_UNKNOWN');
      }
    }
    expect(up.requests).toEqual([]);

    // Globs match the name as the upstream knows it: nginx is library/nginx on Docker Hub.
    expect((await raw(`${m.url}/v2/nginx/manifests/1`, { headers: ACCEPT })).status).toBe(200);
    expect((await raw(`${m.url}/v2/team/app/blobs/${blob}`)).status).toBe(200);
  });

  it('warms nothing it does not allow', async () => {
    const m = await start({ deny: ['evil/**'] });
    const report = await warmImages(m.mirror, ['evil/app:1', 'docker.io/evil/app@' + image]);
    expect(report.failures.map((f) => f.error)).toEqual([expect.stringContaining('NAME_UNKNOWN'), expect.stringContaining('NAME_UNKNOWN')]);
    expect(up.requests).toEqual([]);
  });

  it('serves nothing cached of a repository denied later, and neither prefetches it; purge still removes it', async () => {
    const before = await start();
    expect((await raw(`${before.url}/v2/evil/app/manifests/multi`, { headers: ACCEPT })).status).toBe(200);
    expect((await raw(`${before.url}/v2/evil/app/manifests/1`, { headers: ACCEPT })).status).toBe(200);
    expect((await raw(`${before.url}/v2/evil/app/blobs/${blob}`)).status).toBe(200);
    await before.close();
    up.requests.splice(0);

    const after = await start({ deny: ['evil/**'] }, before.dataDir);
    for (const path of ['manifests/1', `manifests/${image}`, `blobs/${blob}`]) {
      const res = await raw(`${after.url}/v2/evil/app/${path}`, { headers: ACCEPT });
      expect([path, res.status, res.headers['x-mirror-cache']]).toEqual([path, 404, undefined]);
    }
    expect(up.requests).toEqual([]);

    // Prefetch starts from a cache event; one naming the denied repository fetches nothing.
    await after.close();
    let failed!: (err: unknown) => void;
    const backgroundError = new Promise((resolve) => (failed = resolve));
    const prefetching = createMirror(
      parseConfig({ storage: { type: 'fs', path: before.dataDir, fsync: false }, upstreams: [{ name: 'docker.io', url: up.url, deny: ['evil/**'] }], cache: { prefetchPlatforms: true } }),
      { onBackgroundError: (err) => failed(err) },
    );
    await prefetching.ready;
    prefetching.events.emit('cache', { kind: 'manifest', result: 'HIT', upstream: 'docker.io', repository: 'evil/app', digest: index, method: 'GET' });
    expect(await backgroundError).toMatchObject({ code: 'NAME_UNKNOWN' });
    expect(up.requests).toEqual([]);

    const purged = await purge({ storage: prefetching.storage, routing: prefetching.routing, events: prefetching.events, maxManifestBytes: 4 * 1024 * 1024 }, 'evil/app');
    expect(purged.tags).toHaveLength(2);
    await prefetching.close();
  });
});
