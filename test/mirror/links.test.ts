/**
 * Cached content is served only through routes linked to it: two upstreams behind one mirror,
 * content cached through one, and every other way a request could name the same digest (the
 * other upstream by default route, `?ns=` and prefix; GET, HEAD and If-None-Match; a fill in
 * flight; a second mirror on the same storage; after a restart). The end-to-end version with
 * real registries and skopeo is test/e2e/isolation.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LINK_PREFIX } from '../../src/access/links.js';
import { purge } from '../../src/admin/purge.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor, type RawResponse } from '../helpers/http.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
let open: FakeUpstream;
let other: FakeUpstream;
let mirror: TestMirror;
const extra: TestMirror[] = [];

const config = () => ({
  upstreams: [
    { name: 'open.test', url: open.url, default: true },
    { name: 'other.test', url: other.url },
  ],
});

beforeEach(async () => {
  open = await startFakeUpstream();
  other = await startFakeUpstream();
  mirror = await startTestMirror(open.url, config());
});
afterEach(async () => {
  // They share the first mirror's data directory, which its dispose() removes.
  for (const m of extra.splice(0)) await m.close(1000);
  await mirror.dispose();
  await Promise.all([open.close(), other.close()]);
});

const errorCode = (r: RawResponse) => (JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code;
const settled = (m: TestMirror) => waitFor(() => m.mirror.fills.size === 0, 15_000, 'fills to settle');
const links = async (m: TestMirror, digest: string) => {
  const keys: string[] = [];
  for await (const [key] of m.mirror.storage.meta.list(`${LINK_PREFIX}${digest}/`)) keys.push(key);
  return keys.sort();
};

/** A blob of open.test's team/app, pulled once through its own route. */
async function cachedBlob(): Promise<{ data: Buffer; digest: string }> {
  const data = randomBytes(64 * 1024);
  const digest = open.addBlob(data, ['team/app']);
  const first = await raw(`${mirror.url}/v2/team/app/blobs/${digest}`);
  expect(first.status).toBe(200);
  await settled(mirror);
  return { data, digest };
}

/** A manifest of open.test's team/app, pulled once by tag through its own route. */
async function cachedManifest(): Promise<{ body: Buffer; digest: string }> {
  const digest = open.addManifest('team/app', 'v1', { schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [], marker: randomBytes(8).toString('hex') });
  const first = await raw(`${mirror.url}/v2/team/app/manifests/v1`, { headers: { Accept: OCI_MANIFEST } });
  expect(first.status).toBe(200);
  return { body: first.body, digest };
}

/** The ways to name another repository, or another upstream, for the same digest. */
const routes = (kind: 'blobs' | 'manifests', digest: string) => [
  ['the default route, another repository', `/v2/library/anything/${kind}/${digest}`],
  ['?ns= of another upstream', `/v2/team/app/${kind}/${digest}?ns=other.test`],
  ['the prefix of another upstream', `/v2/other.test/team/app/${kind}/${digest}`],
];

describe('a cached blob', () => {
  it('is refused through every unlinked route, by GET, HEAD and If-None-Match, after asking that route’s upstream', async () => {
    const { digest } = await cachedBlob();
    for (const [label, path] of routes('blobs', digest)) {
      for (const method of ['GET', 'HEAD']) {
        const r = await raw(`${mirror.url}${path}`, { method });
        expect(r.status, `${method} ${label}`).toBe(404);
        if (method === 'GET') expect(errorCode(r), label).toBe('BLOB_UNKNOWN');
      }
      const conditional = await raw(`${mirror.url}${path}`, { headers: { 'If-None-Match': `"${digest}"` } });
      expect(conditional.status, `If-None-Match ${label}`).toBe(404);
    }
    // Asked, never fetched: no route pulled the bytes a second time.
    expect(open.count('GET', '/blobs/')).toBe(1);
    expect(other.count('GET', '/blobs/')).toBe(0);
    expect(open.count('HEAD', '/v2/library/anything/blobs/')).toBeGreaterThan(0);
    expect(other.count('HEAD', '/v2/team/app/blobs/')).toBeGreaterThan(0);
    expect(await links(mirror, digest)).toEqual([`${LINK_PREFIX}${digest}/open.test/team/app`]);
  });

  it('is served through another route once that route’s upstream confirms it, from storage, then without asking again', async () => {
    const { data, digest } = await cachedBlob();
    other.addBlob(data, ['mirror/copy']);
    for (let i = 0; i < 2; i++) {
      const r = await raw(`${mirror.url}/v2/other.test/mirror/copy/blobs/${digest}`);
      expect(r.status).toBe(200);
      expect(r.headers['x-mirror-cache']).toBe('HIT');
      expect(r.body.equals(data)).toBe(true);
    }
    expect(other.count('HEAD', '/blobs/')).toBe(1);
    expect(other.count('GET', '/blobs/')).toBe(0);
    expect(await links(mirror, digest)).toEqual([`${LINK_PREFIX}${digest}/open.test/team/app`, `${LINK_PREFIX}${digest}/other.test/mirror/copy`]);
  });

  it('in flight is not joined through an unlinked route', async () => {
    const data = randomBytes(256 * 1024);
    const digest = open.addBlob(data, ['team/app']);
    let release!: () => void;
    open.faults.set(digest, { holdAt: 1024, hold: new Promise<void>((r) => (release = r)) });
    const owner = raw(`${mirror.url}/v2/team/app/blobs/${digest}`);
    await waitFor(() => mirror.mirror.fills.size === 1, 15_000, 'the fill to start');
    const joiner = await raw(`${mirror.url}/v2/other.test/team/app/blobs/${digest}`);
    expect(joiner.status).toBe(404);
    expect(errorCode(joiner)).toBe('BLOB_UNKNOWN');
    release();
    const r = await owner;
    expect(r.complete).toBe(true);
    expect(r.body.equals(data)).toBe(true);
  });

  it('stays refused on a second mirror over the same storage, and linked across a restart', async () => {
    const { digest } = await cachedBlob();
    const second = await startTestMirror(open.url, config(), { dataDir: mirror.dataDir });
    extra.push(second);
    expect((await raw(`${second.url}/v2/other.test/team/app/blobs/${digest}`)).status).toBe(404);
    const heads = open.count('HEAD', '/blobs/');
    const linked = await raw(`${second.url}/v2/team/app/blobs/${digest}`);
    expect(linked.status).toBe(200);
    expect(linked.headers['x-mirror-cache']).toBe('HIT');
    // The link came from the storage the first mirror wrote, not from a question upstream.
    expect(open.count('HEAD', '/blobs/')).toBe(heads);
  });

  it('cached before links existed is linked again by its own route’s confirmation', async () => {
    const { data, digest } = await cachedBlob();
    for (const key of await links(mirror, digest)) await mirror.mirror.storage.meta.delete(key);
    const second = await startTestMirror(open.url, config(), { dataDir: mirror.dataDir });
    extra.push(second);
    const r = await raw(`${second.url}/v2/team/app/blobs/${digest}`);
    expect(r.status).toBe(200);
    expect(r.body.equals(data)).toBe(true);
    expect(open.count('HEAD', '/blobs/')).toBe(1);
    expect(open.count('GET', '/blobs/')).toBe(1);
    expect(await links(mirror, digest)).toEqual([`${LINK_PREFIX}${digest}/open.test/team/app`]);
  });
});

describe('a cached manifest', () => {
  it('by digest is refused through every unlinked route, by GET and HEAD', async () => {
    const { digest } = await cachedManifest();
    for (const [label, path] of routes('manifests', digest)) {
      for (const method of ['GET', 'HEAD']) {
        const r = await raw(`${mirror.url}${path}`, { method, headers: { Accept: OCI_MANIFEST } });
        expect(r.status, `${method} ${label}`).toBe(404);
        if (method === 'GET') expect(errorCode(r), label).toBe('MANIFEST_UNKNOWN');
      }
    }
    expect(open.count('GET', '/manifests/')).toBe(1);
  });

  it('by digest through its own route is a hit without asking upstream, and another route’s confirmation links it', async () => {
    const { body, digest } = await cachedManifest();
    const heads = open.count('HEAD', '/manifests/');
    const own = await raw(`${mirror.url}/v2/team/app/manifests/${digest}`, { headers: { Accept: OCI_MANIFEST } });
    expect(own.headers['x-mirror-cache']).toBe('HIT');
    expect(open.count('HEAD', '/manifests/')).toBe(heads);
    other.addManifest('mirror/copy', undefined, body);
    const confirmed = await raw(`${mirror.url}/v2/mirror/copy/manifests/${digest}?ns=other.test`, { headers: { Accept: OCI_MANIFEST } });
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.equals(body)).toBe(true);
    expect(other.count('HEAD', '/manifests/')).toBe(1);
    expect(other.count('GET', '/manifests/')).toBe(0);
  });

  it('purged takes its links with it, from the store and from memory', async () => {
    const { body, digest } = await cachedManifest();
    expect(await links(mirror, digest)).toHaveLength(1);
    const m = mirror.mirror;
    await purge({ storage: m.storage, events: m.events, routing: m.routing, maxManifestBytes: m.config.cache.maxManifestBytes }, 'team/app:v1');
    expect(await links(mirror, digest)).toEqual([]);

    // Cached again through another route: the first route must ask its upstream again.
    other.addManifest('mirror/copy', undefined, body);
    expect((await raw(`${mirror.url}/v2/other.test/mirror/copy/manifests/${digest}`, { headers: { Accept: OCI_MANIFEST } })).status).toBe(200);
    const heads = open.count('HEAD', '/manifests/');
    expect((await raw(`${mirror.url}/v2/team/app/manifests/${digest}`, { headers: { Accept: OCI_MANIFEST } })).status).toBe(200);
    expect(open.count('HEAD', '/manifests/')).toBe(heads + 1);
  });
});

describe('auth.rules on a protected mirror', () => {
  const basic = (u: string) => `Basic ${Buffer.from(`${u}:${u}-pw`).toString('base64')}`;
  let protectedMirror: TestMirror;
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oci-links-auth-'));
    const hash = (p: string) => bcrypt.hashSync(p, 4);
    await writeFile(join(dir, 'htpasswd'), `x:${hash('x-pw')}\ny:${hash('y-pw')}\n`);
    protectedMirror = await startTestMirror(open.url, {
      ...config(),
      auth: {
        htpasswd: join(dir, 'htpasswd'),
        rules: [
          { users: ['x'], repositories: ['open.test/library/small'] },
          { users: ['y'], repositories: ['open.test/library/medium'] },
        ],
      },
    });
  });
  afterEach(async () => {
    await protectedMirror.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('apply to what is served: what y pulled of medium is not x’s through small', async () => {
    const layer = randomBytes(32 * 1024);
    const digest = open.addBlob(layer, ['library/medium']);
    const manifest = open.addManifest('library/medium', '1', { schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [{ digest }] });
    const asY = { Authorization: basic('y') };
    expect((await raw(`${protectedMirror.url}/v2/library/medium/manifests/1`, { headers: { ...asY, Accept: OCI_MANIFEST } })).status).toBe(200);
    expect((await raw(`${protectedMirror.url}/v2/library/medium/blobs/${digest}`, { headers: asY })).status).toBe(200);
    await settled(protectedMirror);

    for (const method of ['GET', 'HEAD']) {
      const asX = { Authorization: basic('x') };
      const blob = await raw(`${protectedMirror.url}/v2/library/small/blobs/${digest}`, { method, headers: asX });
      expect(blob.status, `${method} blob`).toBe(404);
      const viaSmall = await raw(`${protectedMirror.url}/v2/library/small/manifests/${manifest}`, { method, headers: { ...asX, Accept: OCI_MANIFEST } });
      expect(viaSmall.status, `${method} manifest`).toBe(404);
      const direct = await raw(`${protectedMirror.url}/v2/library/medium/blobs/${digest}`, { method, headers: asX });
      expect(direct.status, `${method} medium as x`).toBe(403);
    }
  });
});
