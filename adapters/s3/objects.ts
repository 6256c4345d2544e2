/**
 * The store's keys and its requests on one committed object: head, ranged get, delete and the
 * presigned get.
 */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable, addAbortSignal } from 'node:stream';
import { parseDigest } from '../../src/reference.js';
import type { BlobInfo, BlobPresignOptions, BlobReadOptions } from '../../src/storage.js';
import type { UploadTarget } from './upload.js';

/** Where one store keeps its blobs. */
export interface S3Blobs {
  client: S3Client;
  bucket: string;
  /** `<prefix>blobs/`: every key the store writes starts with it. */
  blobsPrefix: string;
}

// parseDigest is the guard: only `[a-z0-9]+:[a-f0-9]{64|128}` reaches a key.
export function keyOf({ blobsPrefix }: S3Blobs, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `${blobsPrefix}${algorithm}/${hex}`;
}

export function uploadTarget({ client, bucket }: S3Blobs, key: string): UploadTarget {
  return { client, bucket, key };
}

export async function head({ client, bucket }: S3Blobs, key: string): Promise<BlobInfo | undefined> {
  try {
    const { ContentLength } = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { size: ContentLength ?? 0 };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function readBlob(blobs: S3Blobs, digest: string, { start, end, signal }: BlobReadOptions = {}): Promise<Readable | undefined> {
  const key = keyOf(blobs, digest);
  signal?.throwIfAborted();
  const range = start === undefined && end === undefined ? undefined : `bytes=${start ?? 0}-${end ?? ''}`;
  let res;
  try {
    res = await blobs.client.send(new GetObjectCommand({ Bucket: blobs.bucket, Key: key, Range: range }), { abortSignal: signal });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    // A range that starts past the end: the contract allows fewer bytes, here none.
    if ((err as { name?: string }).name === 'InvalidRange') return Readable.from([]);
    throw err;
  }
  let stream = res.Body instanceof Readable ? res.Body : Readable.from([]);
  // Some S3-compatible servers answer more than was asked (s3rver reads `bytes=0-0` as `bytes=0-`).
  const asked = end === undefined ? undefined : end - (start ?? 0) + 1;
  if (asked !== undefined && (res.ContentLength ?? 0) > asked) stream = Readable.from(take(stream, asked));
  return signal ? addAbortSignal(signal, stream) : stream;
}

export async function deleteBlob(blobs: S3Blobs, digest: string): Promise<boolean> {
  const key = keyOf(blobs, digest);
  // S3 answers a delete the same whether the key existed or not; ask first.
  if (!(await head(blobs, key))) return false;
  await blobs.client.send(new DeleteObjectCommand({ Bucket: blobs.bucket, Key: key }));
  return true;
}

export async function presignBlob(blobs: S3Blobs, digest: string, { expiresIn }: BlobPresignOptions): Promise<string> {
  const key = keyOf(blobs, digest);
  // S3 refuses a presigned URL valid for more than 7 days; 0 would be dead on arrival.
  if (!(expiresIn >= 1 && expiresIn <= 604_800)) throw new RangeError('expiresIn must be between 1 and 604800 seconds');
  return getSignedUrl(blobs.client, new GetObjectCommand({ Bucket: blobs.bucket, Key: key }), { expiresIn: Math.floor(expiresIn) });
}

/** The first `bytes` bytes of `source`; leaving the loop early destroys the rest. */
async function* take(source: Readable, bytes: number): AsyncGenerator<Buffer> {
  let left = bytes;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    const part = chunk.subarray(0, left);
    left -= part.length;
    yield part;
    if (left === 0) return;
  }
}

function isNotFound(err: unknown): boolean {
  const { name, $metadata } = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  // A missing bucket is a misconfiguration, not a missing blob.
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
}
