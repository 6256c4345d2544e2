/**
 * Blobs in any Keyv store, for small deployments: each blob is a set of bounded chunks plus
 * one record that points at them, written last.
 *
 *   upload:<id>                        { digest, started }   an upload in progress (its marker)
 *   chunk:<digest>/<id>/<n>            base64 of bytes [n × chunkSize, (n + 1) × chunkSize)
 *   blob:<digest>                      { size, upload: <id>, chunkSize }   the commit
 *
 * A put writes its marker, then its chunks under a fresh upload id as the verified bytes
 * arrive, and only once size and digest check out the `blob:` record: until then no reader
 * can find the chunks. A failed put deletes its chunks and marker before it rejects; a
 * killed one leaves its marker, by which `recover()` finds and removes the chunks.
 *
 * Chunks live in their own Keyv (by default their own namespace), because listing a Keyv
 * reads every value in it: listing blobs must not read their bytes.
 *
 * Concurrent puts of one digest: the first commit wins and later ones delete their own
 * chunks; commits are serialised per digest within this process. A reader that finds a
 * chunk gone (the blob was replaced or deleted under it) looks the record up again and goes
 * on from the same offset in the new chunk set, or fails if the blob is gone.
 */
import { randomUUID } from 'node:crypto';
import { Readable, addAbortSignal } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Keyv } from 'keyv';
import { verifyingStream } from '../../src/digest.js';
import { OciError } from '../../src/errors.js';
import { parseDigest } from '../../src/reference.js';
import type { BlobStore } from '../../src/storage.js';
import { isKeyv, openKeyvs, type KeyvConnectOptions } from './connect.js';
import { KeyvTable, parseJson } from './table.js';

export interface KeyvBlobStoreOptions {
  /** Bytes per stored value (default 1 MiB); a value holds its chunk as base64, a third larger. */
  chunkSize?: number;
  /**
   * `recover()` removes only uploads started at least this long ago, in ms (default 0: all).
   * Processes sharing a store must set it above the fill timeout.
   */
  recoverOlderThan?: number;
}

/** Two Keyvs: records and markers in one (listed), chunks in the other (never listed). */
export interface KeyvBlobTargets {
  records: Keyv;
  chunks: Keyv;
}

export type KeyvBlobStore = BlobStore & { recover(): Promise<void>; close(): Promise<void> };

interface BlobRecord {
  size: number;
  upload: string;
  chunkSize: number;
}

interface UploadMarker {
  digest: string;
  started: number;
}

const MiB = 1024 * 1024;
/** Chunks deleted at once when the count is known. */
const DELETE_BATCH = 16;

/**
 * `target` is where to connect, or Keyvs of yours (not disconnected by `close()`; build them
 * with `throwOnErrors: true`). One Keyv for both works, but then list() and recover() read
 * every chunk whenever the store enumerates.
 */
export function keyvBlobStore(target: Keyv | KeyvBlobTargets | KeyvConnectOptions, options: KeyvBlobStoreOptions = {}): KeyvBlobStore {
  if (isKeyv(target)) return blobsOver({ records: target, chunks: target }, options, async () => {});
  if ('records' in target) return blobsOver(target, options, async () => {});
  const { keyvs, close } = openKeyvs(target, ['blobs', 'chunks']);
  return blobsOver({ records: keyvs.blobs, chunks: keyvs.chunks }, options, close);
}

export function blobsOver(
  targets: KeyvBlobTargets,
  { chunkSize = MiB, recoverOlderThan = 0 }: KeyvBlobStoreOptions,
  close: () => Promise<void>,
): KeyvBlobStore {
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new RangeError('chunkSize must be a positive integer');
  const records = new KeyvTable(targets.records, 'blob:', { listable: true });
  const uploads = new KeyvTable(targets.records, 'upload:', { listable: true });
  const chunks = new KeyvTable(targets.chunks, 'chunk:', { listable: false });
  /** Commits and deletes per digest, one at a time (in this process). */
  const queues = new Map<string, Promise<unknown>>();

  const chunkKey = (digest: string, upload: string, n: number) => `${digest}/${upload}/${n}`;

  function serially<T>(digest: string, task: () => Promise<T>): Promise<T> {
    const run = (queues.get(digest) ?? Promise.resolve()).then(task);
    const tail = run.catch(() => {});
    queues.set(digest, tail);
    void tail.then(() => {
      if (queues.get(digest) === tail) queues.delete(digest);
    });
    return run;
  }

  async function recordOf(digest: string): Promise<BlobRecord | undefined> {
    const record = parseJson(await records.get(digest)) as Partial<BlobRecord> | undefined;
    const valid =
      Number.isInteger(record?.size) && typeof record?.upload === 'string' && Number.isInteger(record.chunkSize) && record.chunkSize! > 0;
    return valid ? (record as BlobRecord) : undefined;
  }

  /** Removes a chunk set: `count` chunks, or (unknown count) from the first until one is missing. */
  async function deleteChunks(digest: string, upload: string, count?: number): Promise<void> {
    if (count === undefined) {
      // Chunks are written one after the other, so the set has no gaps.
      for (let n = 0; await chunks.delete(chunkKey(digest, upload, n)); n++);
      return;
    }
    for (let n = 0; n < count; n += DELETE_BATCH) {
      const batch = Array.from({ length: Math.min(DELETE_BATCH, count - n) }, (_, i) => chunks.delete(chunkKey(digest, upload, n + i)));
      await Promise.all(batch);
    }
  }

  async function* chunksOf(digest: string, record: BlobRecord, start: number, last: number): AsyncGenerator<Buffer> {
    let current = record;
    let offset = start;
    while (offset <= last) {
      const n = Math.floor(offset / current.chunkSize);
      const text = await chunks.get(chunkKey(digest, current.upload, n));
      if (text === undefined) {
        // Replaced or deleted since we looked: follow the record to whatever holds the blob now.
        const now = await recordOf(digest);
        if (!now) throw new OciError('BLOB_UNKNOWN', `blob ${digest} was deleted while it was read`);
        if (now.upload === current.upload) throw new Error(`chunk ${n} of blob ${digest} is missing from the store`);
        current = now;
        continue;
      }
      const bytes = Buffer.from(text, 'base64');
      const from = offset - n * current.chunkSize;
      const to = Math.min(bytes.length, last - n * current.chunkSize + 1);
      if (to <= from) throw new Error(`chunk ${n} of blob ${digest} is shorter than its record says`);
      yield bytes.subarray(from, to);
      offset += to - from;
    }
  }

  return {
    async stat(digest) {
      parseDigest(digest);
      const record = await recordOf(digest);
      return record && { size: record.size };
    },

    async read(digest, { start = 0, end, signal } = {}) {
      parseDigest(digest);
      signal?.throwIfAborted();
      const record = await recordOf(digest);
      if (!record) return undefined;
      const last = Math.min(end ?? record.size - 1, record.size - 1);
      const stream = Readable.from(chunksOf(digest, record, start, last), { objectMode: false });
      return signal ? addAbortSignal(signal, stream) : stream;
    },

    async put(digest, source, { size, signal } = {}) {
      try {
        parseDigest(digest);
        signal?.throwIfAborted();
      } catch (err) {
        release(source);
        throw err;
      }
      const upload = randomUUID();
      const verify = verifyingStream(digest, size);
      let written = 0;
      let writing: Promise<unknown> = Promise.resolve();
      let marked = false;
      let started = false;
      const writeChunk = (bytes: Buffer): Promise<unknown> => (writing = chunks.set(chunkKey(digest, upload, written++), bytes.toString('base64')));
      const onAbort = () => verify.destroy(signal?.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await uploads.set(upload, JSON.stringify({ digest, started: Date.now() } satisfies UploadMarker));
        marked = true;
        signal?.throwIfAborted();
        started = true;
        let pending: Buffer[] = [];
        let pendingBytes = 0;
        await pipeline(source, verify, async (input: AsyncIterable<Buffer>) => {
          for await (const piece of input) {
            pending.push(piece);
            pendingBytes += piece.length;
            while (pendingBytes >= chunkSize) {
              const all = Buffer.concat(pending, pendingBytes);
              await writeChunk(all.subarray(0, chunkSize));
              pending = [all.subarray(chunkSize)];
              pendingBytes -= chunkSize;
            }
          }
        });
        if (pendingBytes > 0) await writeChunk(Buffer.concat(pending, pendingBytes));
        signal?.throwIfAborted();
        const verified = verify.verifier.size;
        const committed = await serially(digest, async () => {
          if (await recordOf(digest)) return false;
          await records.set(digest, JSON.stringify({ size: verified, upload, chunkSize } satisfies BlobRecord));
          return true;
        });
        // Another put got there first with the same bytes: ours are not needed.
        if (!committed) await deleteChunks(digest, upload, written);
        await uploads.delete(upload);
        return { size: verified };
      } catch (err) {
        if (!started) release(source);
        // A chunk write in flight must land before its set is removed, or it would outlive the removal.
        await writing.catch(() => {});
        // When the store itself failed, the marker stays and recover() finishes the job.
        if (marked) {
          await deleteChunks(digest, upload, written)
            .then(() => uploads.delete(upload))
            .catch(() => {});
        }
        throw err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    },

    async delete(digest) {
      parseDigest(digest);
      return serially(digest, async () => {
        const record = await recordOf(digest);
        if (!record) return false;
        // The record first: from then on no new reader finds the chunks.
        await records.delete(digest);
        await deleteChunks(digest, record.upload, Math.ceil(record.size / record.chunkSize));
        return true;
      });
    },

    async *list() {
      for await (const [digest, json] of records.entries()) {
        const record = parseJson(json) as Partial<BlobRecord> | undefined;
        if (Number.isInteger(record?.size) && isDigest(digest)) yield { digest, size: record!.size! };
      }
    },

    async recover() {
      const cutoff = Date.now() - recoverOlderThan;
      for await (const [upload, json] of uploads.entries()) {
        const marker = parseJson(json) as Partial<UploadMarker> | undefined;
        if (typeof marker?.started === 'number' && marker.started > cutoff) continue;
        const digest = marker?.digest;
        // Its chunks go unless the upload was committed and only the marker's removal was lost.
        if (typeof digest === 'string' && isDigest(digest) && (await recordOf(digest))?.upload !== upload) {
          await deleteChunks(digest, upload);
        }
        await uploads.delete(upload);
      }
    },

    close,
  };
}

function isDigest(value: string): boolean {
  try {
    return parseDigest(value).value === value;
  } catch {
    return false;
  }
}

/**
 * A put that fails before its pipeline starts still owes its source an end: an unread HTTP
 * body holds its connection. (Once started, pipeline destroys the source itself.)
 */
function release(source: Readable | AsyncIterable<Uint8Array>): void {
  if (source instanceof Readable) source.destroy();
  else void source[Symbol.asyncIterator]().return?.()?.catch(() => {});
}
