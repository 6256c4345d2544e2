/**
 * The storage seam. Two small interfaces, so that blobs and metadata can live in different
 * places (S3 blobs + Redis metadata) and so that an adapter with no rename (S3: multipart
 * upload) or no files at all (Keyv: chunked values) fits without faking anything.
 *
 * Every adapter runs the shared conformance suite in `test/conformance/`.
 */
import type { Readable } from 'node:stream';

export interface BlobInfo {
  size: number;
}

export interface BlobReadOptions {
  /** First byte, inclusive. */
  start?: number;
  /** Last byte, inclusive (HTTP Range semantics). */
  end?: number;
  signal?: AbortSignal;
}

export interface BlobPutOptions {
  /** When known, a put whose byte count differs fails with SIZE_INVALID. */
  size?: number;
  /** Aborting rejects the put and leaves nothing behind. */
  signal?: AbortSignal;
}

/**
 * An optional capability: a store that keeps blobs in local files can take over a spool
 * file that the caller already verified, by rename, instead of copying it through `put`.
 */
export interface SpoolCapability {
  /** A directory on the same filesystem as the blobs, for in-progress fills. */
  readonly dir: string;
  /**
   * Commits a verified file, which must lie inside `dir`, by moving it into place; the file
   * is gone from `path` afterwards. A size that differs from the file's rejects with
   * SIZE_INVALID and leaves the file to the caller.
   */
  adopt(digest: string, path: string, size: number): Promise<BlobInfo>;
}

export interface BlobPresignOptions {
  /** Seconds the URL stays valid. */
  expiresIn: number;
}

export interface BlobStore {
  /** Size of a committed blob; `undefined` when absent (a normal answer, not an error). */
  stat(digest: string): Promise<BlobInfo | undefined>;
  /**
   * The committed blob or a byte range of it; `undefined` when absent. The caller checks a
   * range against `stat` first: a range past the end may simply yield fewer bytes.
   */
  read(digest: string, options?: BlobReadOptions): Promise<Readable | undefined>;
  /**
   * Consumes `source` and commits it under `digest` only when its bytes hash to `digest`
   * (and match `options.size`). Rejects with OciError DIGEST_INVALID / SIZE_INVALID on a
   * mismatch, with `signal.reason` on abort, and with the cause on source error. Whatever
   * the failure, nothing becomes visible, temporary data is removed before it rejects, and
   * the source is read to the end or destroyed (an unread upstream body would hold its
   * connection). Concurrent puts of one digest end with one committed blob and all resolve.
   * Every method rejects a malformed digest with DIGEST_INVALID.
   */
  put(digest: string, source: Readable | AsyncIterable<Uint8Array>, options?: BlobPutOptions): Promise<BlobInfo>;
  /** Removes a committed blob; resolves false when it was absent. */
  delete(digest: string): Promise<boolean>;
  /** Every committed blob, in no particular order. */
  list(): AsyncIterable<{ digest: string; size: number }>;
  /**
   * Removes what an interrupted process left behind (temporary files, unfinished uploads). Run at
   * start-up. A store built with an age (the adapters' `recoverOlderThan`) removes only what is
   * older than that (an upload started, a file last written, that long ago), and may then run
   * while other processes write to it: their puts and spools in flight are left alone.
   */
  recover?(): Promise<void>;
  spool?: SpoolCapability;
  /**
   * An optional capability: a URL that serves the committed blob's bytes to whoever holds it
   * (a bearer capability) for `expiresIn` seconds, without the store being asked again;
   * `undefined` when this store has none to give. Whether the blob exists is not checked.
   */
  presign?(digest: string, options: BlobPresignOptions): Promise<string | undefined>;
  /**
   * An optional capability: a committed blob's bytes when they are at hand in memory (the memo,
   * src/memo/), so that a caller can send a Buffer instead of piping a stream; `undefined`
   * otherwise, and then `read` answers. Never reaches the backend.
   */
  held?(digest: string): Buffer | undefined;
  close?(): Promise<void>;
}

/**
 * Small JSON records: tag → digest mappings, manifest media types, later access records.
 * Values must survive JSON round-tripping.
 */
export interface MetadataStore {
  get<T = unknown>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  /** Resolves false when the key was absent. */
  delete(key: string): Promise<boolean>;
  /** Every key that starts with `prefix`, with its value. */
  list<T = unknown>(prefix: string): AsyncIterable<[key: string, value: T]>;
  /** Removes what an interrupted process left behind. Run at start-up only. */
  recover?(): Promise<void>;
  close?(): Promise<void>;
}

export interface Storage {
  blobs: BlobStore;
  meta: MetadataStore;
}
