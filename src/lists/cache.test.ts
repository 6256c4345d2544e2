import { describe, expect, it } from 'vitest';
import { OciError } from '../errors.js';
import type { UpstreamTarget } from '../state.js';
import type { MetadataStore } from '../storage.js';
import type { Upstream } from '../upstream/types.js';
import { ListCache, MAX_LIST_ENTRIES, listKey } from './cache.js';

const TTL = 60_000;

function memoryMeta(): MetadataStore & { records: Map<string, unknown> } {
  const records = new Map<string, unknown>();
  return {
    records,
    get: async <T>(key: string) => structuredClone(records.get(key)) as T | undefined,
    set: async (key, value) => void records.set(key, structuredClone(value)),
    delete: async (key) => records.delete(key),
    async *list<T>(prefix: string) {
      for (const [k, v] of records) if (k.startsWith(prefix)) yield [k, v as T] as [string, T];
    },
  };
}

const target = (upstream: string, repository = 'team/app', extra: Partial<UpstreamTarget> = {}): UpstreamTarget => ({
  upstream: { name: upstream } as Upstream,
  repository,
  ...extra,
});

function setup(options: { maxBytes?: number } = {}) {
  let clock = 1_000_000;
  const meta = memoryMeta();
  const cache = new ListCache({ meta, ttl: TTL, now: () => clock, ...options });
  let calls = 0;
  /** An upstream answer to count, or the error it fails with. */
  const upstream = (answer: unknown) => async () => {
    calls++;
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { meta, cache, upstream, later: (ms: number) => (clock += ms), calls: () => calls };
}

describe('ListCache', () => {
  it('answers from the cache within the ttl, then asks again', async () => {
    const { cache, upstream, later, calls } = setup();
    const a = target('a.test');
    expect(await cache.answer('tags', a, '', upstream({ tags: ['1'] }))).toEqual({ value: { tags: ['1'] }, cache: 'MISS' });
    later(TTL - 1);
    expect(await cache.answer('tags', a, '', upstream({ tags: ['2'] }))).toEqual({ value: { tags: ['1'] }, cache: 'HIT' });
    expect(calls()).toBe(1);
    later(1);
    expect(await cache.answer('tags', a, '', upstream({ tags: ['1'] }))).toMatchObject({ cache: 'REVALIDATED' });
    later(TTL);
    expect(await cache.answer('tags', a, '', upstream({ tags: ['1', '2'] }))).toEqual({ value: { tags: ['1', '2'] }, cache: 'MISS' });
    expect(calls()).toBe(3);
  });

  it('serves stale on a transient failure, and passes on anything else', async () => {
    const { cache, upstream, later } = setup();
    const a = target('a.test');
    await cache.answer('tags', a, '', upstream({ tags: ['1'] }));
    later(TTL);
    for (const err of [new OciError('UNAVAILABLE'), new OciError('TOOMANYREQUESTS'), new OciError('UNAVAILABLE', 'x', { status: 502 })]) {
      expect(await cache.answer('tags', a, '', upstream(err))).toEqual({ value: { tags: ['1'] }, cache: 'STALE' });
    }
    await expect(cache.answer('tags', a, '', upstream(new OciError('DENIED')))).rejects.toMatchObject({ code: 'DENIED' });
    // Not cached at all: nothing stale to serve.
    await expect(cache.answer('tags', a, 'n=5', upstream(new OciError('UNAVAILABLE')))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('forgets the repository’s answers on an upstream 404', async () => {
    const { cache, meta, upstream, later } = setup();
    const a = target('a.test');
    await cache.answer('tags', a, '', upstream({ tags: ['1'] }));
    await cache.answer('tags', a, 'n=1', upstream({ tags: ['1'] }));
    later(TTL);
    await expect(cache.answer('tags', a, '', upstream(new OciError('NAME_UNKNOWN')))).rejects.toMatchObject({ code: 'NAME_UNKNOWN' });
    expect(meta.records.has(listKey('tags', a))).toBe(false);
    await expect(cache.answer('tags', a, 'n=1', upstream(new OciError('UNAVAILABLE')))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('keeps upstreams, repositories, kinds and queries apart', async () => {
    const { cache, upstream, calls } = setup();
    await cache.answer('tags', target('a.test'), '', upstream('a'));
    expect((await cache.answer('tags', target('b.test'), '', upstream('b'))).value).toBe('b');
    expect((await cache.answer('tags', target('a.test', 'team/other'), '', upstream('c'))).value).toBe('c');
    expect((await cache.answer('referrers', target('a.test'), '', upstream('d'))).value).toBe('d');
    expect((await cache.answer('tags', target('a.test'), 'n=1', upstream('e'))).value).toBe('e');
    expect((await cache.answer('tags', target('a.test'), '', upstream('f'))).value).toBe('a');
    expect(calls()).toBe(5);
  });

  it('neither caches nor serves from the cache what a client’s own credentials fetched', async () => {
    const { cache, meta, upstream, calls } = setup();
    await cache.answer('tags', target('a.test'), '', upstream('mirror’s'));
    const client = target('a.test', 'team/app', { credentials: { username: 'u', password: 'p' } });
    expect(await cache.answer('tags', client, '', upstream('client’s'))).toEqual({ value: 'client’s', cache: 'MISS' });
    await expect(cache.answer('tags', client, '', upstream(new OciError('UNAVAILABLE')))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(calls()).toBe(3);
    expect(await meta.get(listKey('tags', target('a.test')))).toMatchObject({ entries: [{ value: 'mirror’s' }] });
  });

  it('bounds a record by entries and by bytes, newest first', async () => {
    const { cache, meta, upstream } = setup({ maxBytes: 4096 });
    const a = target('a.test');
    for (let i = 0; i < MAX_LIST_ENTRIES + 5; i++) await cache.answer('tags', a, `last=${i}`, upstream([String(i)]));
    const entries = (await meta.get<{ entries: Array<{ query: string }> }>(listKey('tags', a)))!.entries;
    expect(entries).toHaveLength(MAX_LIST_ENTRIES);
    expect(entries[0]!.query).toBe(`last=${MAX_LIST_ENTRIES + 4}`);
    await cache.answer('tags', a, 'big', upstream(['x'.repeat(3000)]));
    const after = (await meta.get<{ entries: Array<{ query: string }> }>(listKey('tags', a)))!.entries;
    expect(after[0]!.query).toBe('big');
    expect(JSON.stringify(after).length).toBeLessThanOrEqual(4096 + 100);
    // Larger than a whole record: served, not kept.
    expect((await cache.answer('tags', a, 'huge', upstream(['x'.repeat(5000)]))).cache).toBe('MISS');
    expect((await meta.get<{ entries: Array<{ query: string }> }>(listKey('tags', a)))!.entries[0]!.query).toBe('big');
  });

  it('shares one upstream request between concurrent misses', async () => {
    const { cache, upstream, calls } = setup();
    const a = target('a.test');
    const results = await Promise.all(Array.from({ length: 5 }, () => cache.answer('tags', a, '', upstream('x'))));
    expect(results.map((r) => r.value)).toEqual(['x', 'x', 'x', 'x', 'x']);
    expect(calls()).toBe(1);
  });

  it('treats a record of another shape as absent', async () => {
    const { cache, meta, upstream } = setup();
    const a = target('a.test');
    await meta.set(listKey('tags', a), { entries: 'nonsense' });
    expect((await cache.answer('tags', a, '', upstream('x'))).cache).toBe('MISS');
  });
});
