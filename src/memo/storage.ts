/**
 * The memo: hot metadata records, blob sizes and small blobs (manifests among them) answered
 * from memory, so that a warm manifest or small blob costs no file open, no stat and no Redis
 * round trip. It wraps the storage rather than living in the manifest cache or the blob path
 * because every writer and deleter (fills, the manifest cache, eviction, purge, gc, warm-up)
 * already goes through `mirror.storage`: a delete made through it cannot skip the memo.
 *
 * What it trusts, and for how long:
 * - Only what the store said exists: an absent key is asked again every time, since another
 *   replica (or an `oci-mirror` command on the same storage) may write it at any moment.
 * - A record or blob size for at most `maxAge` after it was read, and a record for no longer
 *   than `expiresAt` says (a tag record: until its own `checkedAt + tagTtl`, the moment a
 *   single mirror would revalidate it anyway). So a tag another replica moved is seen here no
 *   later than the tag's TTL allows any mirror to serve the old digest.
 * - Blob bytes and manifest records are immutable by digest. One that another process
 *   removed is found out when the read fails (the memo forgets it and answers "absent", which
 *   callers treat as a miss) or, for bytes held in memory, after `maxAge` at the latest.
 * - A read that overlapped a write or delete made through this memo does not fill it: the
 *   value it read may be the one just replaced or removed.
 */
import { Readable, addAbortSignal } from 'node:stream';
import { readCapped } from '../http.js';
import type { BlobInfo, BlobReadOptions, BlobStore, MetadataStore, SpoolCapability, Storage } from '../storage.js';
import { ByteLru } from './lru.js';

/**
 * Thousands of tag, manifest and link records (a few hundred bytes each) and a few hundred
 * manifests and configs: a busy mirror's working set of small things, at a fraction of what
 * the process costs at idle anyway.
 */
export const DEFAULT_MEMO_BYTES = 8 * 1024 * 1024;

/** Blobs up to this size are kept whole in memory when read: manifests, image configs, small layers. */
export const SMALL_BLOB_BYTES = 64 * 1024;

/** What a Map entry and its key strings cost beside the value itself, roughly. */
const ENTRY_OVERHEAD = 160;

export interface MemoOptions {
  /** Bytes of records, sizes and small blobs kept in memory; 0 turns the memo off. */
  budget: number;
  /** The longest anything is trusted without asking the store again, ms. */
  maxAge: number;
  /** A record's own end of trust (ms since the epoch), when it has one: a tag record's freshness. */
  expiresAt?: (key: string, value: unknown) => number | undefined;
  now?: () => number;
}

type Held = { kind: 'record'; value: unknown } | { kind: 'size'; size: number } | { kind: 'bytes'; bytes: Buffer };

export function memoStorage(storage: Storage, options: MemoOptions): Storage {
  if (options.budget <= 0) return storage;
  const memo = new Memo(options);
  return { blobs: memoBlobs(storage.blobs, memo), meta: memoMeta(storage.meta, memo) };
}

class Memo {
  private readonly lru: ByteLru<Held>;
  private readonly maxAge: number;
  readonly now: () => number;
  readonly expiresAt: MemoOptions['expiresAt'];
  /** Bumped by every write and delete: a read that began before one does not fill the memo. */
  writes = 0;

  constructor({ budget, maxAge, expiresAt, now = Date.now }: MemoOptions) {
    this.lru = new ByteLru(budget);
    this.maxAge = maxAge;
    this.expiresAt = expiresAt;
    this.now = now;
  }

  get(key: string): Held | undefined {
    return this.lru.get(key, this.now());
  }

  keep(key: string, held: Held, bytes: number, until = Infinity): void {
    const expiresAt = Math.min(this.now() + this.maxAge, until);
    if (expiresAt > this.now()) this.lru.set(key, { value: held, bytes: bytes + ENTRY_OVERHEAD + key.length, expiresAt });
  }

  /** Called before a write or delete of `keys` is sent to the store. */
  forget(...keys: string[]): number {
    for (const key of keys) this.lru.delete(key);
    return ++this.writes;
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }
}

const recordKey = (key: string) => `m:${key}`;
const sizeKey = (digest: string) => `s:${digest}`;
const bytesKey = (digest: string) => `b:${digest}`;

function memoMeta(meta: MetadataStore, memo: Memo): MetadataStore {
  const keep = (key: string, value: unknown, json: string) =>
    memo.keep(recordKey(key), { kind: 'record', value: Object.freeze(value) }, json.length * 2, memo.expiresAt?.(key, value));
  return {
    async get<T>(key: string) {
      const held = memo.get(recordKey(key));
      if (held?.kind === 'record') return held.value as T;
      const seen = memo.writes;
      const value = await meta.get<T>(key);
      if (value !== undefined && seen === memo.writes) keep(key, value, JSON.stringify(value));
      return value;
    },
    async set(key, value) {
      // Kept again only when it was hot: batches of access records must not push out the rest.
      const hot = memo.has(recordKey(key));
      const mine = memo.forget(recordKey(key));
      await meta.set(key, value);
      if (hot && mine === memo.writes) {
        const json = JSON.stringify(value);
        keep(key, JSON.parse(json), json);
      }
    },
    async delete(key) {
      memo.forget(recordKey(key));
      return meta.delete(key);
    },
    list: (prefix) => meta.list(prefix),
    recover: meta.recover && (() => meta.recover!()),
    close: meta.close && (() => meta.close!()),
  };
}

function memoBlobs(blobs: BlobStore, memo: Memo): BlobStore {
  const forget = (digest: string) => memo.forget(sizeKey(digest), bytesKey(digest));
  const keepSize = (digest: string, size: number) => memo.keep(sizeKey(digest), { kind: 'size', size }, 0);

  async function stat(digest: string): Promise<BlobInfo | undefined> {
    const held = memo.get(sizeKey(digest));
    if (held?.kind === 'size') return { size: held.size };
    const seen = memo.writes;
    const info = await blobs.stat(digest);
    if (info && seen === memo.writes) keepSize(digest, info.size);
    return info;
  }

  async function read(digest: string, options: BlobReadOptions = {}): Promise<Readable | undefined> {
    const held = memo.get(bytesKey(digest));
    if (held?.kind === 'bytes') return fromMemory(held.bytes, options);
    const info = await stat(digest);
    if (!info) return undefined;
    const seen = memo.writes;
    const small = info.size <= SMALL_BLOB_BYTES;
    const stream = await blobs.read(digest, small ? { signal: options.signal } : options);
    if (!stream) {
      // Removed behind our back (another replica's eviction): absent, as the store now says.
      forget(digest);
      return undefined;
    }
    if (!small) return stream;
    const bytes = await readCapped(stream, SMALL_BLOB_BYTES, 'stored blob');
    if (seen === memo.writes && bytes.length === info.size) memo.keep(bytesKey(digest), { kind: 'bytes', bytes }, bytes.length);
    return fromMemory(bytes, options);
  }

  async function put(...[digest, source, options]: Parameters<BlobStore['put']>): Promise<BlobInfo> {
    const mine = forget(digest);
    const info = await blobs.put(digest, source, options);
    if (mine === memo.writes) keepSize(digest, info.size);
    return info;
  }

  return {
    stat,
    read,
    put,
    async delete(digest) {
      forget(digest);
      return blobs.delete(digest);
    },
    list: () => blobs.list(),
    recover: blobs.recover && (() => blobs.recover!()),
    spool: blobs.spool && memoSpool(blobs.spool, forget, keepSize, memo),
    presign: blobs.presign && ((digest, options) => blobs.presign!(digest, options)),
    held(digest) {
      const held = memo.get(bytesKey(digest));
      return held?.kind === 'bytes' ? held.bytes : undefined;
    },
    close: blobs.close && (() => blobs.close!()),
  };
}

function memoSpool(spool: SpoolCapability, forget: (digest: string) => number, keepSize: (digest: string, size: number) => void, memo: Memo): SpoolCapability {
  return {
    // A getter, as the store's own: it makes sure the directory exists each time it is asked.
    get dir() {
      return spool.dir;
    },
    async adopt(digest, path, size) {
      const mine = forget(digest);
      const info = await spool.adopt(digest, path, size);
      if (mine === memo.writes) keepSize(digest, info.size);
      return info;
    },
  };
}

/** A held blob as the store would stream it, range and abort included. */
function fromMemory(bytes: Buffer, { start = 0, end, signal }: BlobReadOptions): Readable {
  signal?.throwIfAborted();
  const part = bytes.subarray(start, end === undefined ? undefined : end + 1);
  const stream = Readable.from([part], { objectMode: false });
  return signal ? addAbortSignal(signal, stream) : stream;
}
