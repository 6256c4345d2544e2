/**
 * Blobs in S3 or an S3-compatible store (MinIO, Ceph, R2), on the AWS SDK v3.
 *
 *   <prefix>blobs/<alg>/<hex>   committed blobs, and nothing else: there are no temporary objects
 *
 * A put streams through the digest check into a multipart upload to the final key (see
 * upload.ts); S3 shows the object only once the upload is completed, which happens after the
 * size and digest verified. A failed put aborts the upload before it rejects. When S3 cannot
 * be reached to abort it, the abort is retried in the background for a few minutes, and
 * `recover()` (run at start-up) aborts whatever is still left under the prefix.
 *
 * No `spool` capability: S3 has no rename, so fills commit through `put()`. `presign` signs
 * a GetObject URL (SigV4 in the query string) locally, without a request to S3.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
  paginateListObjectsV2,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable, addAbortSignal } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream } from '../../src/digest.js';
import { parseDigest } from '../../src/reference.js';
import type { BlobPresignOptions, BlobStore } from '../../src/storage.js';
import { MIN_PART_SIZE } from './limits.js';
import { BlobUpload, abortUpload, type UploadTarget } from './upload.js';

export { MIN_PART_SIZE } from './limits.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3BlobStoreOptions {
  bucket: string;
  /** Prepended to every key, e.g. `mirror/` (a missing trailing `/` is added). Default none. */
  prefix?: string;
  /** For S3-compatible stores, e.g. `http://127.0.0.1:9000`; AWS's own endpoint when absent. */
  endpoint?: string;
  /** Default `us-east-1` (S3-compatible stores mostly ignore it, but the signature needs one). */
  region?: string;
  /** `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`; most S3-compatible stores need it. */
  forcePathStyle?: boolean;
  /** Static credentials; the SDK's default chain (environment, profile, instance role) when absent. */
  credentials?: S3Credentials;
  /** A client to use instead of building one from the options above; it is not destroyed by `close()`. */
  client?: S3Client;
  /** Bytes per multipart part (default 8 MiB, at least 5 MiB); each part in flight is held in memory. */
  partSize?: number;
  /** Parts uploaded at once per put (default 2). */
  partConcurrency?: number;
  /**
   * `recover()` aborts only uploads started at least this long ago, in ms (default 0: all of
   * them). Replicas that share a prefix must set it above the fill timeout, or one starting
   * up would abort another's uploads in flight.
   */
  recoverOlderThan?: number;
}

export type S3BlobStore = Omit<BlobStore, 'presign'> & {
  recover(): Promise<void>;
  presign(digest: string, options: BlobPresignOptions): Promise<string>;
  close(): Promise<void>;
  readonly client: S3Client;
  readonly bucket: string;
  /** The normalised prefix: empty, or ending in `/`. */
  readonly prefix: string;
};

const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
/** Background aborts after a failed put's own abort could not reach S3: 0.5 s doubling to 15 s, about 3 minutes in all. */
const ABORT_RETRIES = 15;

export function s3BlobStore(options: S3BlobStoreOptions): S3BlobStore {
  const { bucket, partSize = DEFAULT_PART_SIZE, partConcurrency = 2, recoverOlderThan = 0 } = options;
  if (!bucket) throw new TypeError('s3BlobStore needs a bucket');
  if (!(partSize >= MIN_PART_SIZE)) throw new RangeError(`partSize must be at least ${MIN_PART_SIZE} bytes (S3's minimum part)`);
  if (!(partConcurrency >= 1)) throw new RangeError('partConcurrency must be at least 1');
  const prefix = normalisePrefix(options.prefix);
  const blobsPrefix = `${prefix}blobs/`;
  const client = options.client ?? createClient(options);
  const retries = new Set<NodeJS.Timeout>();
  let closed = false;

  // parseDigest is the guard: only `[a-z0-9]+:[a-f0-9]{64|128}` reaches a key.
  const keyOf = (digest: string): string => {
    const { algorithm, hex } = parseDigest(digest);
    return `${blobsPrefix}${algorithm}/${hex}`;
  };
  const target = (key: string): UploadTarget => ({ client, bucket, key });

  /** Keeps trying to abort an upload that S3 could not be told about when its put failed. */
  function retryAbort(key: string, uploadId: string, attempt = 1): void {
    if (closed || attempt > ABORT_RETRIES) return;
    const timer = setTimeout(() => {
      retries.delete(timer);
      abortUpload(target(key), uploadId).catch(() => retryAbort(key, uploadId, attempt + 1));
    }, Math.min(500 * 2 ** (attempt - 1), 15_000));
    timer.unref();
    retries.add(timer);
  }

  async function head(key: string): Promise<{ size: number } | undefined> {
    try {
      const { ContentLength } = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { size: ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  return {
    client,
    bucket,
    prefix,

    // async, so that an invalid digest rejects rather than throws.
    stat: async (digest) => head(keyOf(digest)),

    async read(digest, { start, end, signal } = {}) {
      const key = keyOf(digest);
      signal?.throwIfAborted();
      const range = start === undefined && end === undefined ? undefined : `bytes=${start ?? 0}-${end ?? ''}`;
      let res;
      try {
        res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }), { abortSignal: signal });
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
    },

    async put(digest, source, { size, signal } = {}) {
      let key;
      try {
        key = keyOf(digest);
        signal?.throwIfAborted();
      } catch (err) {
        release(source);
        throw err;
      }
      const verify = verifyingStream(digest, size);
      // A part that fails in the background ends the pipeline at once, as does an abort while the source is silent.
      const upload = new BlobUpload(target(key), {
        partSize,
        concurrency: partConcurrency,
        expectedSize: size,
        onError: (err) => verify.destroy(err),
      });
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
          if (uploadId) retryAbort(key, uploadId);
        }
        throw err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      return { size: verify.verifier.size };
    },

    async presign(digest, { expiresIn }) {
      const key = keyOf(digest);
      // S3 refuses a presigned URL valid for more than 7 days; 0 would be dead on arrival.
      if (!(expiresIn >= 1 && expiresIn <= 604_800)) throw new RangeError('expiresIn must be between 1 and 604800 seconds');
      return getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: Math.floor(expiresIn) });
    },

    async delete(digest) {
      const key = keyOf(digest);
      // S3 answers a delete the same whether the key existed or not; ask first.
      if (!(await head(key))) return false;
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    },

    async *list() {
      for await (const page of paginateListObjectsV2({ client }, { Bucket: bucket, Prefix: blobsPrefix })) {
        for (const object of page.Contents ?? []) {
          // Skip whatever is not a blob we could have written.
          const digest = digestAt(object.Key?.slice(blobsPrefix.length));
          if (digest) yield { digest, size: object.Size ?? 0 };
        }
      }
    },

    async recover() {
      const cutoff = Date.now() - recoverOlderThan;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (;;) {
        let page;
        try {
          page = await client.send(
            new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: blobsPrefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
          );
        } catch (err) {
          // A store that cannot list uploads (s3rver, some gateways) leaves them to its own lifecycle rules.
          if (isUnsupported(err)) return;
          throw err;
        }
        for (const { Key, UploadId, Initiated } of page.Uploads ?? []) {
          if (!Key || !UploadId || (Initiated && Initiated.getTime() > cutoff)) continue;
          await abortUpload(target(Key), UploadId);
        }
        if (!page.IsTruncated) return;
        keyMarker = page.NextKeyMarker;
        uploadIdMarker = page.NextUploadIdMarker;
      }
    },

    async close() {
      closed = true;
      for (const timer of retries) clearTimeout(timer);
      retries.clear();
      if (!options.client) client.destroy();
    },
  };
}

function createClient({ endpoint, region = 'us-east-1', forcePathStyle = false, credentials }: S3BlobStoreOptions): S3Client {
  return new S3Client({
    endpoint,
    region,
    forcePathStyle,
    // A copy: the SDK adds a `$source` key to the credentials object it is given.
    credentials: credentials && { ...credentials },
    // The SDK's default adds CRC32 checksums, sent as aws-chunked trailers for streams, which many
    // S3-compatible stores reject; the blob's own digest is checked before anything is committed.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Bounded waits: a store that stops answering fails the request instead of hanging a fill.
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
  });
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

function normalisePrefix(prefix = ''): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

function isUnsupported(err: unknown): boolean {
  const { name, $metadata } = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === 'NotImplemented' || name === 'MethodNotAllowed' || $metadata?.httpStatusCode === 501;
}

function isNotFound(err: unknown): boolean {
  const { name, $metadata } = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  // A missing bucket is a misconfiguration, not a missing blob.
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
}

/** The digest that `<alg>/<hex>` (a key below `blobs/`) stands for, if it is one. */
function digestAt(path: string | undefined): string | undefined {
  const slash = path?.indexOf('/') ?? -1;
  if (!path || slash < 0) return undefined;
  const value = `${path.slice(0, slash)}:${path.slice(slash + 1)}`;
  try {
    return parseDigest(value).value;
  } catch {
    return undefined;
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
