import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const STALE = '110 - "Response is Stale"';
let upstream: FakeUpstream;
let mirror: TestMirror;

beforeEach(async () => {
  upstream = await startFakeUpstream();
  // Only Date is faked, before the mirror takes its clock: I/O keeps real timers.
  vi.useFakeTimers({ toFake: ['Date'] });
  mirror = await startTestMirror(upstream.url, { cache: { tagTtl: '1m' } });
});
afterEach(async () => {
  vi.useRealTimers();
  await mirror.dispose();
  await upstream.close();
});

const later = (ms: number) => vi.setSystemTime(Date.now() + ms);
const json = (body: Buffer) => JSON.parse(body.toString()) as { tags?: string[]; manifests?: unknown[] };
const addTags = (...tags: string[]) => {
  for (const t of tags) upstream.addManifest('team/app', t, { schemaVersion: 2, mediaType: OCI_MANIFEST, tag: t });
};

describe('tags list cache', () => {
  it('keeps pages apart and re-addresses a cached page’s Link to the name each client used', async () => {
    addTags('a', 'b', 'c', 'd');
    const first = await raw(`${mirror.url}/v2/team/app/tags/list?n=2`);
    expect(first.headers.link).toBe('</v2/team/app/tags/list?n=2&last=b>; rel="next"');
    const prefixed = await raw(`${mirror.url}/v2/registry.test/team/app/tags/list?n=2`);
    expect(prefixed.headers['x-mirror-cache']).toBe('HIT');
    expect(prefixed.headers.link).toBe('</v2/registry.test/team/app/tags/list?n=2&last=b>; rel="next"');
    const next = await raw(`${mirror.url}/v2/team/app/tags/list?n=2&last=b`);
    expect(json(next.body).tags).toEqual(['c', 'd']);
    expect(next.headers.link).toBeUndefined();
    expect(upstream.count('GET', '/tags/list')).toBe(2);
  });

  it('serves stale with the Warning on 503 and 429, passes other errors on, and sees new tags after tagTtl', async () => {
    addTags('a');
    await raw(`${mirror.url}/v2/team/app/tags/list`);
    later(60_000);
    const staleOn = async (status: number, tags: string[]) => {
      upstream.failWith = status;
      const stale = await raw(`${mirror.url}/v2/team/app/tags/list`);
      expect(stale.status, String(status)).toBe(200);
      expect(stale.headers.warning).toBe(STALE);
      expect(json(stale.body).tags).toEqual(tags);
    };
    await staleOn(503, ['a']);
    await staleOn(500, ['a']);
    upstream.failWith = 403;
    expect((await raw(`${mirror.url}/v2/team/app/tags/list`)).status).toBe(403);
    upstream.failWith = undefined;
    addTags('b');
    const fresh = await raw(`${mirror.url}/v2/team/app/tags/list`);
    expect(fresh.headers['x-mirror-cache']).toBe('MISS');
    expect(json(fresh.body).tags).toEqual(['a', 'b']);
    // Last: a 429 also starts the upstream's back-off, which keeps every later request here.
    later(60_000);
    await staleOn(429, ['a', 'b']);
  });

  it('forgets a list the upstream answers 404 for', async () => {
    addTags('a');
    await raw(`${mirror.url}/v2/team/app/tags/list`);
    later(60_000);
    upstream.failWith = 404;
    expect((await raw(`${mirror.url}/v2/team/app/tags/list`)).status).toBe(404);
    upstream.failWith = 503;
    expect((await raw(`${mirror.url}/v2/team/app/tags/list`)).status).toBe(503);
  });
});

describe('referrers cache', () => {
  const subject = `sha256:${'d'.repeat(64)}`;
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ artifactType: 'application/spdx+json' }] };

  it('caches per subject and artifactType, keeps OCI-Filters-Applied, and serves stale when the upstream fails', async () => {
    upstream.referrers.set(subject, index);
    const filtered = `${mirror.url}/v2/team/app/referrers/${subject}?artifactType=application/spdx%2Bjson`;
    const all = `${mirror.url}/v2/team/app/referrers/${subject}`;
    expect((await raw(filtered)).headers['oci-filters-applied']).toBe('artifactType');
    const again = await raw(filtered);
    expect(again.headers['x-mirror-cache']).toBe('HIT');
    expect(again.headers['oci-filters-applied']).toBe('artifactType');
    expect(again.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
    expect(JSON.parse(again.body.toString())).toEqual(index);
    expect((await raw(all)).headers['x-mirror-cache']).toBe('MISS');
    expect(upstream.count('GET', '/referrers/')).toBe(2);
    later(60_000);
    upstream.failWith = 503;
    const stale = await raw(filtered);
    expect(stale.status).toBe(200);
    expect(stale.headers.warning).toBe(STALE);
    expect(JSON.parse(stale.body.toString())).toEqual(index);
  });

  it('passes an upstream without the referrers API on as 404, every time', async () => {
    for (let i = 0; i < 2; i++) expect((await raw(`${mirror.url}/v2/team/app/referrers/${subject}`)).status).toBe(404);
    expect(upstream.count('GET', '/referrers/')).toBe(2);
  });
});
