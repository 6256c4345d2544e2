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
import { S3Client } from '@aws-sdk/client-s3';
import type { BlobPresignOptions, BlobStore } from '../../src/storage.js';
import { MIN_PART_SIZE } from './limits.js';
import { abortStaleUploads, listBlobs } from './listing.js';
import { deleteBlob, head, keyOf, presignBlob, readBlob, type S3Blobs } from './objects.js';
import { AbortRetries, putBlob } from './put.js';

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

export function s3BlobStore(options: S3BlobStoreOptions): S3BlobStore {
  const { bucket, partSize = DEFAULT_PART_SIZE, partConcurrency = 2, recoverOlderThan = 0 } = options;
  if (!bucket) throw new TypeError('s3BlobStore needs a bucket');
  if (!(partSize >= MIN_PART_SIZE)) throw new RangeError(`partSize must be at least ${MIN_PART_SIZE} bytes (S3's minimum part)`);
  if (!(partConcurrency >= 1)) throw new RangeError('partConcurrency must be at least 1');
  const prefix = normalisePrefix(options.prefix);
  const client = options.client ?? createClient(options);
  const blobs: S3Blobs = { client, bucket, blobsPrefix: `${prefix}blobs/` };
  const parts = { partSize, concurrency: partConcurrency };
  const retries = new AbortRetries();
  return {
    client,
    bucket,
    prefix,
    // async, so that an invalid digest rejects rather than throws.
    stat: async (digest) => head(blobs, keyOf(blobs, digest)),
    read: (digest, readOptions) => readBlob(blobs, digest, readOptions),
    put: (digest, source, putOptions) => putBlob(blobs, parts, retries, digest, source, putOptions),
    presign: (digest, presignOptions) => presignBlob(blobs, digest, presignOptions),
    delete: (digest) => deleteBlob(blobs, digest),
    list: () => listBlobs(blobs),
    recover: () => abortStaleUploads(blobs, recoverOlderThan),
    async close() {
      retries.close();
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

function normalisePrefix(prefix = ''): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}
