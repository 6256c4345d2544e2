/**
 * The stored form of a Keyv blob store (the layout is in blobs.ts): its three tables, and the
 * moves on them that reading, writing and recovery share.
 */
import type { Keyv } from 'keyv';
import { KeyvTable, parseJson } from './table.js';

/** Two Keyvs: records and markers in one (listed), chunks in the other (never listed). */
export interface KeyvBlobTargets {
  records: Keyv;
  chunks: Keyv;
}

export interface BlobRecord {
  size: number;
  upload: string;
  chunkSize: number;
}

export interface UploadMarker {
  digest: string;
  started: number;
}

/** Chunks deleted at once when the count is known. */
const DELETE_BATCH = 16;

export class ChunkedBlobs {
  /** `blob:<digest>`, the commits. */
  readonly records: KeyvTable;
  /** `upload:<id>`, the markers of uploads in progress. */
  readonly uploads: KeyvTable;
  private readonly chunks: KeyvTable;
  /** Commits and deletes per digest, one at a time (in this process). */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    targets: KeyvBlobTargets,
    /** Bytes per chunk written; a record keeps the size its own chunks were cut to. */
    readonly chunkSize: number,
  ) {
    this.records = new KeyvTable(targets.records, 'blob:', { listable: true });
    this.uploads = new KeyvTable(targets.records, 'upload:', { listable: true });
    this.chunks = new KeyvTable(targets.chunks, 'chunk:', { listable: false });
  }

  serially<T>(digest: string, task: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(digest) ?? Promise.resolve()).then(task);
    const tail = run.catch(() => {});
    this.queues.set(digest, tail);
    void tail.then(() => {
      if (this.queues.get(digest) === tail) this.queues.delete(digest);
    });
    return run;
  }

  async recordOf(digest: string): Promise<BlobRecord | undefined> {
    const record = parseJson(await this.records.get(digest)) as Partial<BlobRecord> | undefined;
    const valid =
      Number.isInteger(record?.size) && typeof record?.upload === 'string' && Number.isInteger(record.chunkSize) && record.chunkSize! > 0;
    return valid ? (record as BlobRecord) : undefined;
  }

  /** Chunk `n` of an upload's set as stored (base64); `undefined` when it is gone. */
  chunk(digest: string, upload: string, n: number): Promise<string | undefined> {
    return this.chunks.get(chunkKey(digest, upload, n));
  }

  setChunk(digest: string, upload: string, n: number, bytes: Buffer): Promise<void> {
    return this.chunks.set(chunkKey(digest, upload, n), bytes.toString('base64'));
  }

  /** Removes a chunk set: `count` chunks, or (unknown count) from the first until one is missing. */
  async deleteChunks(digest: string, upload: string, count?: number): Promise<void> {
    if (count === undefined) {
      // Chunks are written one after the other, so the set has no gaps.
      for (let n = 0; await this.chunks.delete(chunkKey(digest, upload, n)); n++);
      return;
    }
    for (let n = 0; n < count; n += DELETE_BATCH) {
      const batch = Array.from({ length: Math.min(DELETE_BATCH, count - n) }, (_, i) => this.chunks.delete(chunkKey(digest, upload, n + i)));
      await Promise.all(batch);
    }
  }
}

function chunkKey(digest: string, upload: string, n: number): string {
  return `${digest}/${upload}/${n}`;
}
