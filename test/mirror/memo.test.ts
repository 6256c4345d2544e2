/**
 * The memo (src/memo/) as a mirror uses it: what is deleted through the mirror is gone from its
 * memory at once, and what another mirror on the same storage removed is a miss, never a 500.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { removeContent } from '../../src/eviction/remove.js';
import { SMALL_BLOB_BYTES } from '../../src/memo/storage.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
let upstream: FakeUpstream;
let a: TestMirror;
let b: TestMirror | undefined;

beforeEach(async () => {
  upstream = await startFakeUpstream();
  a = await startTestMirror(upstream.url);
});
afterEach(async () => {
  await b?.close(1000);
  b = undefined;
  await a.dispose();
  await upstream.close();
});

async function pulledTwice(mirror: TestMirror, url: string): Promise<void> {
  expect((await raw(url)).status).toBe(200);
  await waitFor(() => mirror.mirror.fills.size === 0, 15_000, 'the fill to settle');
  const again = await raw(url);
  expect(again.headers['x-mirror-cache']).toBe('HIT');
}

it('serves a blob another mirror on the same storage evicted as a miss, fetched again', async () => {
  const data = randomBytes(SMALL_BLOB_BYTES * 2);
  const d = upstream.addBlob(data);
  const url = `${a.url}/v2/team/app/blobs/${d}`;
  await pulledTwice(a, url);
  b = await startTestMirror(upstream.url, {}, { dataDir: a.dataDir });
  await removeContent(b.mirror.storage, d, 'blob');

  const res = await raw(url);
  expect(res.status).toBe(200);
  expect(res.headers['x-mirror-cache']).toBe('MISS');
  expect(res.body.equals(data)).toBe(true);
  expect(upstream.count('GET', `/blobs/${d}`)).toBe(2);
});

it('forgets a small blob and a manifest that eviction removes through the mirror', async () => {
  const small = randomBytes(4096);
  const d = upstream.addBlob(small);
  const m = upstream.addManifest('team/app', '1.0', { schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }, OCI_MANIFEST);
  const blobUrl = `${a.url}/v2/team/app/blobs/${d}`;
  const manifestUrl = `${a.url}/v2/team/app/manifests/${m}`;
  await pulledTwice(a, blobUrl);
  await pulledTwice(a, manifestUrl);
  await removeContent(a.mirror.storage, d, 'blob');
  await removeContent(a.mirror.storage, m, 'manifest');

  const blob = await raw(blobUrl);
  expect(blob.headers['x-mirror-cache']).toBe('MISS');
  expect(blob.body.equals(small)).toBe(true);
  const manifest = await raw(manifestUrl, { headers: { accept: OCI_MANIFEST } });
  expect(manifest.headers['x-mirror-cache']).toBe('MISS');
  expect(upstream.count('GET', `/blobs/${d}`)).toBe(2);
  expect(upstream.count('GET', `/manifests/${m}`)).toBe(2);
});

it('sees at once a tag another mirror on the same storage cached: absence is never remembered', async () => {
  const m = upstream.addManifest('team/app', '2.0', { schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }, OCI_MANIFEST);
  b = await startTestMirror(upstream.url, {}, { dataDir: a.dataDir });
  upstream.failWith = 503;
  expect((await raw(`${a.url}/v2/team/app/manifests/2.0`)).status).toBe(503);
  upstream.failWith = undefined;
  expect((await raw(`${b.url}/v2/team/app/manifests/2.0`)).headers['x-mirror-cache']).toBe('MISS');
  upstream.failWith = 503;
  const res = await raw(`${a.url}/v2/team/app/manifests/2.0`);
  expect(res.status).toBe(200);
  expect(res.headers['x-mirror-cache']).toBe('HIT');
  expect(res.headers['docker-content-digest']).toBe(m);
});
