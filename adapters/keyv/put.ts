/**
 * The write path of the Keyv blob store: marker first, then the verified bytes as chunks under a
 * fresh upload id, and the `blob:` record last, so that no reader finds a chunk set before it is
 * whole and verified.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream } from '../../src/digest.js';
import { parseDigest } from '../../src/reference.js';
import type { BlobInfo, BlobPutOptions } from '../../src/storage.js';
import { release } from '../release.js';
import type { BlobRecord, ChunkedBlobs, UploadMarker } from './chunked.js';

export async function putBlob(
  blobs: ChunkedBlobs,
  digest: string,
  source: Readable | AsyncIterable<Uint8Array>,
  { size, signal }: BlobPutOptions = {},
): Promise<BlobInfo> {
  try {
    parseDigest(digest);
    signal?.throwIfAborted();
  } catch (err) {
    release(source);
    throw err;
  }
  const upload = randomUUID();
  const verify = verifyingStream(digest, size);
  const writer = new ChunkWriter(blobs, digest, upload);
  let marked = false;
  let started = false;
  const onAbort = () => verify.destroy(signal?.reason as Error);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await blobs.uploads.set(upload, JSON.stringify({ digest, started: Date.now() } satisfies UploadMarker));
    marked = true;
    signal?.throwIfAborted();
    started = true;
    await pipeline(source, verify, async (input: AsyncIterable<Buffer>) => {
      for await (const piece of input) await writer.push(piece);
    });
    await writer.flush();
    signal?.throwIfAborted();
    return await commitUpload(blobs, digest, upload, verify.verifier.size, writer.written);
  } catch (err) {
    if (!started) release(source);
    // A chunk write in flight must land before its set is removed, or it would outlive the removal.
    await writer.settled();
    // When the store itself failed, the marker stays and recover() finishes the job.
    if (marked) {
      await blobs
        .deleteChunks(digest, upload, writer.written)
        .then(() => blobs.uploads.delete(upload))
        .catch(() => {});
    }
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Cuts the verified bytes into chunks of the store's chunk size, written one after the other. */
class ChunkWriter {
  /** Chunks handed to the store so far, the one in flight included: what a cleanup must remove. */
  written = 0;
  private writing: Promise<unknown> = Promise.resolve();
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly blobs: ChunkedBlobs,
    private readonly digest: string,
    private readonly upload: string,
  ) {}

  async push(piece: Buffer): Promise<void> {
    const { chunkSize } = this.blobs;
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    while (this.pendingBytes >= chunkSize) {
      const all = Buffer.concat(this.pending, this.pendingBytes);
      await this.write(all.subarray(0, chunkSize));
      this.pending = [all.subarray(chunkSize)];
      this.pendingBytes -= chunkSize;
    }
  }

  /** Writes the last, short chunk. */
  async flush(): Promise<void> {
    if (this.pendingBytes > 0) await this.write(Buffer.concat(this.pending, this.pendingBytes));
  }

  /** Resolves once no chunk write is in flight, however it ended. */
  async settled(): Promise<void> {
    await this.writing.catch(() => {});
  }

  private write(bytes: Buffer): Promise<unknown> {
    return (this.writing = this.blobs.setChunk(this.digest, this.upload, this.written++, bytes));
  }
}

/** Makes a verified upload the blob; the first commit of a digest wins, and later ones remove their own chunks. */
async function commitUpload(blobs: ChunkedBlobs, digest: string, upload: string, size: number, chunks: number): Promise<BlobInfo> {
  const committed = await blobs.serially(digest, async () => {
    if (await blobs.recordOf(digest)) return false;
    await blobs.records.set(digest, JSON.stringify({ size, upload, chunkSize: blobs.chunkSize } satisfies BlobRecord));
    return true;
  });
  // Another put got there first with the same bytes: ours are not needed.
  if (!committed) await blobs.deleteChunks(digest, upload, chunks);
  await blobs.uploads.delete(upload);
  return { size };
}
