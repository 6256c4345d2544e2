import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { UpstreamTarget } from '../state.js';
import type { BlobStore, MetadataStore } from '../storage.js';
import type { Upstream, UpstreamRequest } from '../upstream/types.js';
import { ManifestCache } from './cache.js';
import { tagKey } from './keys.js';
import { Misses } from './misses.js';

describe('Misses', () => {
  it('remembers a key for its ttl, and nothing with a ttl of 0', () => {
    let clock = 0;
    const misses = new Misses(5000, () => clock);
    misses.add('a');
    clock += 4999;
    expect(misses.has('a')).toBe(true);
    expect(misses.has('b')).toBe(false);
    clock += 1;
    expect(misses.has('a')).toBe(false);
    const off = new Misses(0, () => clock);
    off.add('a');
    expect(off.has('a')).toBe(false);
  });

  it('forgets the oldest past its bound', () => {
    const misses = new Misses(5000, () => 0, 3);
    for (const k of ['a', 'b', 'c', 'd']) misses.add(k);
    expect(['a', 'b', 'c', 'd'].map((k) => misses.has(k))).toEqual([false, true, true, true]);
  });
});

/** An upstream that has the tags it is given, counting the requests it gets. */
function fakeUpstream(name: string, tags: Map<string, Buffer>) {
  const requests: string[] = [];
  const upstream = {
    name,
    url: `http://${name}`,
    async request(req: UpstreamRequest) {
      requests.push(`${req.method} ${req.path}`);
      const tag = req.path.slice(req.path.lastIndexOf('/') + 1);
      const body = tags.get(tag);
      const json = Buffer.from('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}');
      if (!body) return { status: 404, headers: {}, body: Readable.from(req.method === 'GET' ? [json] : []), url: '' };
      return { status: 200, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: Readable.from(req.method === 'GET' ? [body] : []), url: '' };
    },
    close: async () => {},
  } satisfies Upstream;
  return { upstream, requests };
}

function memoryStorage(): { blobs: BlobStore; meta: MetadataStore } {
  const records = new Map<string, unknown>();
  const bytes = new Map<string, Buffer>();
  const meta: MetadataStore = {
    get: async <T>(key: string) => records.get(key) as T | undefined,
    set: async (key, value) => void records.set(key, value),
    delete: async (key) => records.delete(key),
    async *list() {},
  };
  const blobs = {
    async put(digest: string, stream: Readable) {
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      bytes.set(digest, Buffer.concat(chunks));
    },
    stat: async (digest: string) => (bytes.has(digest) ? { size: bytes.get(digest)!.length } : undefined),
    read: async (digest: string) => (bytes.has(digest) ? Readable.from([bytes.get(digest)!]) : undefined),
    delete: async (digest: string) => bytes.delete(digest),
  } as unknown as BlobStore;
  return { blobs, meta };
}

describe('ManifestCache with negativeTtl', () => {
  const NEGATIVE_TTL = 5000;
  function setup(negativeTtl = NEGATIVE_TTL) {
    let clock = 1_000_000;
    const tags = new Map<string, Buffer>();
    const a = fakeUpstream('a.test', tags);
    const storage = memoryStorage();
    const cache = new ManifestCache({ ...storage, tagTtl: 60_000, negativeTtl, now: () => clock });
    const target: UpstreamTarget = { upstream: a.upstream, repository: 'team/app' };
    return { cache, tags, target, storage, requests: a.requests, later: (ms: number) => (clock += ms) };
  }

  it('answers a repeated miss without asking the upstream until negativeTtl has passed', async () => {
    const { cache, target, requests, later } = setup();
    for (let i = 0; i < 20; i++) {
      await expect(cache.byTag(target, 'missing')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN', status: 404 });
    }
    expect(requests).toEqual(['HEAD /v2/team/app/manifests/missing']);
    later(NEGATIVE_TTL);
    await expect(cache.byTag(target, 'missing')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    expect(requests).toHaveLength(2);
  });

  it('asks every time when off, as before', async () => {
    const { cache, target, requests } = setup(0);
    for (let i = 0; i < 3; i++) await expect(cache.byTag(target, 'missing')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    expect(requests).toHaveLength(3);
  });

  it('keeps (upstream, repository, tag) apart, and never for a client’s own credentials', async () => {
    const { cache, target, requests } = setup();
    await expect(cache.byTag(target, 'missing')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    await expect(cache.byTag(target, 'other')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    await expect(cache.byTag({ ...target, repository: 'team/else' }, 'missing')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    const b = fakeUpstream('b.test', new Map());
    await expect(cache.byTag({ upstream: b.upstream, repository: 'team/app' }, 'missing')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    expect(requests).toHaveLength(3);
    expect(b.requests).toHaveLength(1);
    const forwarded = { ...target, credentials: { username: 'u', password: 'p' } };
    for (let i = 0; i < 2; i++) await expect(cache.byTag(forwarded, 'forwarded')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    await expect(cache.byTag(target, 'forwarded')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    expect(requests).toHaveLength(6);
  });

  it('never masks a tag the mirror has cached', async () => {
    const { cache, target, tags, storage, requests, later } = setup();
    tags.set('v1', Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'));
    const first = await cache.byTag(target, 'v1');
    expect(first.cache).toBe('MISS');
    // As if this process had seen a 404 for it, and another replica cached it since.
    const record = await storage.meta.get(tagKey(target, 'v1'));
    tags.delete('v1');
    later(60_000);
    await expect(cache.byTag(target, 'v1')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    // Within negativeTtl of that 404, fresh in the store: served.
    await storage.meta.set(tagKey(target, 'v1'), { ...(record as object), checkedAt: 1_060_000 });
    expect((await cache.byTag(target, 'v1')).cache).toBe('HIT');
    // Stale in the store: the upstream is asked, not the memory of its 404.
    await storage.meta.set(tagKey(target, 'v1'), { ...(record as object), checkedAt: 1_000_000 });
    const asked = requests.length;
    await expect(cache.byTag(target, 'v1')).rejects.toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    expect(requests.length).toBe(asked + 1);
  });
});
