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
import { Readable, addAbortSignal } from 'node:stream';
import type { Keyv } from 'keyv';
import { OciError } from '../../src/errors.js';
import { isValidDigest, parseDigest } from '../../src/reference.js';
import type { BlobInfo, BlobReadOptions, BlobStore } from '../../src/storage.js';
import { ChunkedBlobs, type BlobRecord, type KeyvBlobTargets, type UploadMarker } from './chunked.js';
import { isKeyv, openKeyvs, type KeyvConnectOptions } from './connect.js';
import { putBlob } from './put.js';
import { parseJson } from './table.js';

export type { KeyvBlobTargets } from './chunked.js';

export interface KeyvBlobStoreOptions {
  /** Bytes per stored value (default 1 MiB); a value holds its chunk as base64, a third larger. */
  chunkSize?: number;
  /**
   * `recover()` removes only uploads started at least this long ago, in ms (default 0: all).
   * Processes sharing a store must set it above the fill timeout.
   */
  recoverOlderThan?: number;
}

export type KeyvBlobStore = BlobStore & { recover(): Promise<void>; close(): Promise<void> };

const MiB = 1024 * 1024;

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
  const blobs = new ChunkedBlobs(targets, chunkSize);
  return {
    stat: (digest) => statBlob(blobs, digest),
    read: (digest, options) => readBlob(blobs, digest, options),
    put: (digest, source, options) => putBlob(blobs, digest, source, options),
    delete: (digest) => deleteBlob(blobs, digest),
    list: () => listBlobs(blobs),
    recover: () => recoverUploads(blobs, recoverOlderThan),
    close,
  };
}

async function statBlob(blobs: ChunkedBlobs, digest: string): Promise<BlobInfo | undefined> {
  parseDigest(digest);
  const record = await blobs.recordOf(digest);
  return record && { size: record.size };
}

async function readBlob(blobs: ChunkedBlobs, digest: string, { start = 0, end, signal }: BlobReadOptions = {}): Promise<Readable | undefined> {
  parseDigest(digest);
  signal?.throwIfAborted();
  const record = await blobs.recordOf(digest);
  if (!record) return undefined;
  const last = Math.min(end ?? record.size - 1, record.size - 1);
  const stream = Readable.from(chunksOf(blobs, digest, record, start, last), { objectMode: false });
  return signal ? addAbortSignal(signal, stream) : stream;
}

async function* chunksOf(blobs: ChunkedBlobs, digest: string, record: BlobRecord, start: number, last: number): AsyncGenerator<Buffer> {
  let current = record;
  let offset = start;
  while (offset <= last) {
    const n = Math.floor(offset / current.chunkSize);
    const text = await blobs.chunk(digest, current.upload, n);
    if (text === undefined) {
      // Replaced or deleted since we looked: follow the record to whatever holds the blob now.
      const now = await blobs.recordOf(digest);
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

async function deleteBlob(blobs: ChunkedBlobs, digest: string): Promise<boolean> {
  parseDigest(digest);
  return blobs.serially(digest, async () => {
    const record = await blobs.recordOf(digest);
    if (!record) return false;
    // The record first: from then on no new reader finds the chunks.
    await blobs.records.delete(digest);
    await blobs.deleteChunks(digest, record.upload, Math.ceil(record.size / record.chunkSize));
    return true;
  });
}

async function* listBlobs(blobs: ChunkedBlobs): AsyncGenerator<{ digest: string; size: number }> {
  for await (const [digest, json] of blobs.records.entries()) {
    const record = parseJson(json) as Partial<BlobRecord> | undefined;
    if (Number.isInteger(record?.size) && isValidDigest(digest)) yield { digest, size: record!.size! };
  }
}

async function recoverUploads(blobs: ChunkedBlobs, olderThan: number): Promise<void> {
  const cutoff = Date.now() - olderThan;
  for await (const [upload, json] of blobs.uploads.entries()) {
    const marker = parseJson(json) as Partial<UploadMarker> | undefined;
    if (typeof marker?.started === 'number' && marker.started > cutoff) continue;
    const digest = marker?.digest;
    // Its chunks go unless the upload was committed and only the marker's removal was lost.
    if (typeof digest === 'string' && isValidDigest(digest) && (await blobs.recordOf(digest))?.upload !== upload) {
      await blobs.deleteChunks(digest, upload);
    }
    await blobs.uploads.delete(upload);
  }
}

