/**
 * The write path of the S3 blob store: the source through the digest check into a multipart
 * upload (upload.ts), completed only once size and digest verified, aborted otherwise.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream } from '../../src/digest.js';
import type { BlobInfo, BlobPutOptions } from '../../src/storage.js';
import { release } from '../release.js';
import { keyOf, uploadTarget, type S3Blobs } from './objects.js';
import { BlobUpload, abortUpload, type UploadTarget } from './upload.js';

export interface PartOptions {
  partSize: number;
  /** Parts uploaded at once per put. */
  concurrency: number;
}

/** Background aborts after a failed put's own abort could not reach S3: 0.5 s doubling to 15 s, about 3 minutes in all. */
const ABORT_RETRIES = 15;

export async function putBlob(
  blobs: S3Blobs,
  parts: PartOptions,
  retries: AbortRetries,
  digest: string,
  source: Readable | AsyncIterable<Uint8Array>,
  { size, signal }: BlobPutOptions = {},
): Promise<BlobInfo> {
  let key;
  try {
    key = keyOf(blobs, digest);
    signal?.throwIfAborted();
  } catch (err) {
    release(source);
    throw err;
  }
  const verify = verifyingStream(digest, size);
  const target = uploadTarget(blobs, key);
  // A part that fails in the background ends the pipeline at once, as does an abort while the source is silent.
  const upload = new BlobUpload(target, { ...parts, expectedSize: size, onError: (err) => verify.destroy(err) });
  const onAbort = () => verify.destroy(signal?.reason as Error);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await pipeline(source, verify, async (chunks: AsyncIterable<Buffer>) => {
      for await (const chunk of chunks) await upload.write(chunk);
    });
    signal?.throwIfAborted();
    await upload.complete();
  } catch (err) {
    try {
      await upload.abort();
    } catch {
      const uploadId = await upload.startedId();
      if (uploadId) retries.schedule(target, uploadId);
    }
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return { size: verify.verifier.size };
}

/** Keeps trying to abort uploads that S3 could not be told about when their put failed, until closed. */
export class AbortRetries {
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  schedule(target: UploadTarget, uploadId: string, attempt = 1): void {
    if (this.closed || attempt > ABORT_RETRIES) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      abortUpload(target, uploadId).catch(() => this.schedule(target, uploadId, attempt + 1));
    }, Math.min(500 * 2 ** (attempt - 1), 15_000));
    timer.unref();
    this.timers.add(timer);
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}
