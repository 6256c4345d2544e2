import { Readable } from 'node:stream';
import { Keyv, type KeyvStoreAdapter } from 'keyv';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { digestOf } from '../../src/digest.js';
import { blobStoreConformance, type BlobStoreHarness } from '../../test/conformance/blob-store.js';
import { chunked, collect, pseudoRandomBytes, readSummary, stallingSource, summary } from '../../test/conformance/helpers.js';
import { metadataStoreConformance } from '../../test/conformance/metadata-store.js';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../../test/helpers/redis.js';
import { freePort } from '../../test/helpers/registry.js';
import { requireTool } from '../../test/helpers/tools.js';
import { openKeyvs } from './connect.js';
import { keyvBlobStore, keyvMetadataStore, keyvStorage, type KeyvBlobStoreOptions, type KeyvBlobTargets } from './index.js';

const MiB = 1024 * 1024;

/**
 * A Keyv store over a Map that has no `iterator()`, as some Keyv stores have none: the
 * adapter must then keep its index records. It also counts the gets of chunk values.
 */
function plainStore(map = new Map<string, unknown>()): KeyvStoreAdapter & { map: Map<string, unknown>; chunkGets: number } {
  const store = {
    opts: {},
    map,
    chunkGets: 0,
    async get(key: string) {
      if (key.includes(':chunk:')) store.chunkGets++;
      return map.get(key) as never;
    },
    async set(key: string, value: unknown) {
      map.set(key, value);
      return true;
    },
    delete: async (key: string) => map.delete(key),
    clear: async () => map.clear(),
    on: () => store,
  };
  return store;
}

interface KeyvPair extends KeyvBlobTargets {
  /** Every key in each Keyv, without Keyv's namespace. */
  keys(): Promise<{ records: string[]; chunks: string[] }>;
  close(): Promise<void>;
}

/** Records and chunks as two Keyvs over Maps: iterable ones, or plain stores without `iterator()`. */
function memoryPair(iterable: boolean): KeyvPair {
  const maps = { records: new Map<string, unknown>(), chunks: new Map<string, unknown>() };
  const keyv = (name: 'records' | 'chunks') =>
    new Keyv({ store: iterable ? maps[name] : plainStore(maps[name]), namespace: name, throwOnErrors: true });
  const strip = (map: Map<string, unknown>) => [...map.keys()].map((k) => k.slice(k.indexOf(':') + 1));
  return {
    records: keyv('records'),
    chunks: keyv('chunks'),
    keys: async () => ({ records: strip(maps.records), chunks: strip(maps.chunks) }),
    close: async () => {},
  };
}

/** Uploads still marked, plus chunks that no committed record points at. */
async function countTemporary(pair: KeyvPair): Promise<number> {
  const { records, chunks } = await pair.keys();
  const markers = records.filter((k) => k.startsWith('upload:')).length;
  let orphans = 0;
  for (const key of chunks) {
    const [digest, upload] = key.slice('chunk:'.length).split('/');
    const record = (await pair.records.get<string>(`blob:${digest}`)) ?? '{}';
    if ((JSON.parse(record) as { upload?: string }).upload !== upload) orphans++;
  }
  return markers + orphans;
}

/** A put cut off mid-way, as a killed process leaves it: its marker and some chunks. */
async function leaveUpload(pair: KeyvPair): Promise<void> {
  const data = pseudoRandomBytes(50_000, 99);
  const stalled = stallingSource(data.subarray(0, 5_000), data.subarray(5_000));
  void keyvBlobStore(pair, { chunkSize: 1024 }).put(digestOf(data), stalled.source).catch(() => {});
  await vi.waitFor(async () => expect((await pair.keys()).chunks.length).toBeGreaterThan(3), { timeout: 5_000 });
}

function blobHarness(pair: KeyvPair, options: KeyvBlobStoreOptions = {}): BlobStoreHarness {
  return {
    store: keyvBlobStore(pair, options),
    cleanup: () => pair.close(),
    countTemporary: () => countTemporary(pair),
    leaveTemporary: () => leaveUpload(pair),
    recoverOlderThan: (ms) => keyvBlobStore(pair, { ...options, recoverOlderThan: ms }).recover(),
  };
}

blobStoreConformance('keyv (memory)', async () => blobHarness(memoryPair(true)));
blobStoreConformance('keyv (store without iterator(): index records)', async () => blobHarness(memoryPair(false)), {
  largeBlobBytes: 4 * MiB,
});
blobStoreConformance('keyv (memory, odd 65537-byte chunks)', async () => blobHarness(memoryPair(true), { chunkSize: 65_537 }), {
  largeBlobBytes: 4 * MiB,
});
metadataStoreConformance('keyv (memory)', async () => ({ store: keyvMetadataStore({ url: 'memory' }), cleanup: async () => {} }));
metadataStoreConformance('keyv (store without iterator(): index record)', async () => ({
  store: keyvMetadataStore(new Keyv({ store: plainStore(), throwOnErrors: true })),
  cleanup: async () => {},
}));

describe.skipIf(!requireTool('redis-server', REDIS_INSTALL_HINT))('with @keyv/redis on a real redis-server', () => {
  let redis: RunningRedis | undefined;
  let namespaces = 0;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.destroy();
  });

  /** Records and chunks in their own namespaces, fresh for every test. */
  function redisPair(): KeyvPair {
    const { keyvs, close } = openKeyvs({ url: redis!.url, namespace: `t${++namespaces}` }, ['records', 'chunks']);
    const keysOf = async (keyv: Keyv) => (await collect(keyv.iterator!(undefined) as AsyncIterable<[string]>)).map(([k]) => k);
    return {
      ...keyvs,
      keys: async () => ({ records: await keysOf(keyvs.records), chunks: await keysOf(keyvs.chunks) }),
      close,
    };
  }

  blobStoreConformance('keyv (redis)', async () => blobHarness(redisPair()));
  metadataStoreConformance('keyv (redis)', async () => ({
    store: keyvMetadataStore({ url: redis!.url, namespace: `m${++namespaces}` }),
    cleanup: async () => {},
  }));

  it('shares what one connection wrote with another, and keeps it across a reconnect', async () => {
    const options = { url: redis!.url, namespace: `shared${++namespaces}` };
    const data = pseudoRandomBytes(3 * MiB + 5, 41);
    const first = keyvStorage(options);
    await first.blobs.put(digestOf(data), chunked(data, 100_000));
    await first.meta.set('tag/r:1', { digest: digestOf(data) });
    const second = keyvStorage(options);
    expect(await second.meta.get('tag/r:1')).toEqual({ digest: digestOf(data) });
    expect(await readSummary(await second.blobs.read(digestOf(data), { start: MiB - 1, end: 2 * MiB }))).toEqual(
      summary(data.subarray(MiB - 1, 2 * MiB + 1)),
    );
    await Promise.all([first.blobs.close(), first.meta.close(), second.blobs.close(), second.meta.close()]);
    const third = keyvStorage(options);
    expect(await collect(third.meta.list('tag/'))).toEqual([['tag/r:1', { digest: digestOf(data) }]]);
    expect(await collect(third.blobs.list())).toEqual([{ digest: digestOf(data), size: data.length }]);
    await Promise.all([third.blobs.close(), third.meta.close()]);
  });

  it('fails a put, and ends its source, when Redis cannot be reached', async () => {
    const { keyvs, close } = openKeyvs({ url: `redis://127.0.0.1:${await freePort()}` }, ['records', 'chunks']);
    const store = keyvBlobStore(keyvs, { chunkSize: 1024 });
    const data = pseudoRandomBytes(10_000, 42);
    const source = Readable.from([data]);
    await expect(store.put(digestOf(data), source)).rejects.toThrow();
    expect(source.destroyed).toBe(true);
    await expect(store.stat(digestOf(data))).rejects.toThrow();
    await close();
  });
});

describe('keyv adapter', () => {
  const data = pseudoRandomBytes(2 * MiB + 777, 51);
  const digest = digestOf(data);
  let pair: KeyvPair;

  afterEach(async () => {
    await pair?.close();
  });

  it('stores bounded chunks under an upload id and the record last', async () => {
    pair = memoryPair(true);
    const store = keyvBlobStore(pair, { chunkSize: 256 * 1024 });
    const stalled = stallingSource(data.subarray(0, MiB), data.subarray(MiB));
    const put = store.put(digest, stalled.source);
    await stalled.taken;
    await vi.waitFor(async () => expect((await pair.keys()).chunks).toHaveLength(4));
    // Chunks and the marker are there; nothing a reader could find.
    expect((await pair.keys()).records.filter((k) => k.startsWith('blob:'))).toEqual([]);
    expect(await store.stat(digest)).toBeUndefined();
    expect(await collect(store.list())).toEqual([]);
    stalled.finish();
    await put;
    const { records, chunks } = await pair.keys();
    expect(records).toEqual([`blob:${digest}`]);
    expect(chunks).toHaveLength(Math.ceil(data.length / (256 * 1024)));
    for (const key of chunks) {
      const value = await pair.chunks.get<string>(key);
      expect(Buffer.from(value!, 'base64').length).toBeLessThanOrEqual(256 * 1024);
    }
  });

  it('reads a range from the chunks it needs and no others', async () => {
    const store = plainStore();
    const keyv = new Keyv({ store, throwOnErrors: true });
    const blobs = keyvBlobStore(keyv, { chunkSize: 100_000 });
    pair = { records: keyv, chunks: keyv, keys: async () => ({ records: [], chunks: [] }), close: async () => {} };
    await blobs.put(digest, Readable.from([data]));
    store.chunkGets = 0;
    expect(await readSummary(await blobs.read(digest, { start: 250_000, end: 450_000 }))).toEqual(
      summary(data.subarray(250_000, 450_001)),
    );
    expect(store.chunkGets).toBe(3);
    store.chunkGets = 0;
    expect(await readSummary(await blobs.read(digest, { start: data.length - 1 }))).toEqual(summary(data.subarray(-1)));
    expect(store.chunkGets).toBe(1);
  });

  it('lets a reader go on from the same offset when the blob is replaced under it', async () => {
    pair = memoryPair(true);
    const small = keyvBlobStore(pair, { chunkSize: 1000 });
    await small.put(digest, Readable.from([data]));
    const stream = await small.read(digest, { start: 10 });
    const chunks = stream![Symbol.asyncIterator]();
    const first = (await chunks.next()).value as Buffer;
    // Deleted and put again with another chunk size: the reader's chunk set is gone.
    expect(await small.delete(digest)).toBe(true);
    await keyvBlobStore(pair, { chunkSize: 300_000 }).put(digest, Readable.from([data]));
    const rest: Buffer[] = [first];
    for (let r = await chunks.next(); !r.done; r = await chunks.next()) rest.push(r.value as Buffer);
    expect(summary(Buffer.concat(rest))).toEqual(summary(data.subarray(10)));
    expect(await countTemporary(pair)).toBe(0);
  });

  it('fails a reader whose blob is deleted under it', async () => {
    pair = memoryPair(true);
    const store = keyvBlobStore(pair, { chunkSize: 1000 });
    await store.put(digest, Readable.from([data]));
    const stream = await store.read(digest);
    const chunks = stream![Symbol.asyncIterator]();
    await chunks.next();
    await store.delete(digest);
    await expect(
      (async () => {
        for (let r = await chunks.next(); !r.done; r = await chunks.next());
      })(),
    ).rejects.toMatchObject({ code: 'BLOB_UNKNOWN' });
  });

  it('ignores a default TTL on the Keyv: cached records do not expire', async () => {
    const keyv = new Keyv({ store: new Map(), ttl: 20, throwOnErrors: true });
    const meta = keyvMetadataStore(keyv);
    const blobs = keyvBlobStore(keyv, { chunkSize: 1000 });
    pair = { records: keyv, chunks: keyv, keys: async () => ({ records: [], chunks: [] }), close: async () => {} };
    await meta.set('tag/r:1', 'x');
    await blobs.put(digestOf(data.subarray(0, 5000)), Readable.from([data.subarray(0, 5000)]));
    await new Promise((r) => setTimeout(r, 60));
    expect(await meta.get('tag/r:1')).toBe('x');
    expect(await readSummary(await blobs.read(digestOf(data.subarray(0, 5000))))).toEqual(summary(data.subarray(0, 5000)));
  });

  it('recover() leaves uploads younger than recoverOlderThan', async () => {
    pair = memoryPair(true);
    await leaveUpload(pair);
    const before = await countTemporary(pair);
    await keyvBlobStore(pair, { recoverOlderThan: 60_000 }).recover();
    expect(await countTemporary(pair)).toBe(before);
    await keyvBlobStore(pair).recover();
    expect(await countTemporary(pair)).toBe(0);
  });

  it('keeps metadata, blob records and chunks apart in one shared Keyv', async () => {
    const keyv = new Keyv({ store: new Map(), throwOnErrors: true });
    pair = { records: keyv, chunks: keyv, keys: async () => ({ records: [], chunks: [] }), close: async () => {} };
    const meta = keyvMetadataStore(keyv);
    const blobs = keyvBlobStore(keyv, { chunkSize: 1000 });
    await meta.set('blob:x', 1);
    await blobs.put(digest, Readable.from([data]));
    expect(await collect(meta.list(''))).toEqual([['blob:x', 1]]);
    expect(await collect(blobs.list())).toEqual([{ digest, size: data.length }]);
  });

  it('refuses a namespace or URL it cannot use, and a chunk size below one byte', () => {
    expect(() => keyvMetadataStore({ url: 'memory', namespace: 'a:b' })).toThrow(/namespace/);
    expect(() => keyvMetadataStore({ url: 'memory', namespace: 'a*' })).toThrow(/namespace/);
    expect(() => keyvStorage({ url: 'mongodb://x' })).toThrow(/url/);
    expect(() => keyvBlobStore({ url: 'memory' }, { chunkSize: 0 })).toThrow(/chunkSize/);
  });
});
