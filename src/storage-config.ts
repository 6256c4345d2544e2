/**
 * The `storage` section of the config and the factory that turns it into adapters. Kept
 * apart from the rest of the config so that adding an adapter touches this file only.
 *
 *   storage: { type: fs, path: /var/cache/oci }                         both on local disk
 *   storage: { type: keyv, url: redis://127.0.0.1:6379 }                both in Redis (or `memory`)
 *   storage:                                                            mix and match
 *     blobs: { type: s3, bucket: oci-cache, endpoint: http://minio:9000, forcePathStyle: true }
 *     meta:  { type: keyv, url: redis://127.0.0.1:6379 }
 *
 * S3 holds blobs only, so it appears under `blobs:`; metadata goes to `fs` or `keyv`. With
 * `redirect: { enabled: true, expiresIn: 5m }` there, cached blob GETs answer 307 to S3.
 */
import { z } from 'zod';
import { duration } from './duration.js';
import { fsBlobStore, fsMetadataStore, fsStorage } from '../adapters/fs/index.js';
import { DEFAULT_NAMESPACE, isKeyvUrl } from '../adapters/keyv/options.js';
import { MIN_PART_SIZE } from '../adapters/s3/limits.js';
import { deferredBlobStore, deferredMetadataStore } from './deferred-storage.js';
import type { BlobStore, MetadataStore, Storage } from './storage.js';

// The Keyv and S3 adapters (and their Redis client and AWS SDK) load only when configured.
const keyvAdapter = () => import('../adapters/keyv/index.js');
const s3Adapter = () => import('../adapters/s3/index.js');

const fsSchema = z.object({ type: z.literal('fs'), path: z.string().min(1), fsync: z.boolean().default(true) }).strict();

const keyvSchema = z
  .object({
    type: z.literal('keyv'),
    url: z.string().refine(isKeyvUrl, { message: 'must be "memory" or a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379' }),
    namespace: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'may only hold letters, digits, ".", "_" and "-"')
      .default(DEFAULT_NAMESPACE),
    /** Bytes per stored blob chunk (default 1 MiB). */
    chunkSize: z.number().int().positive().optional(),
  })
  .strict();

const s3Schema = z
  .object({
    type: z.literal('s3'),
    bucket: z.string().min(1),
    prefix: z.string().default(''),
    /** For S3-compatible stores; AWS when absent. */
    endpoint: z
      .string()
      .refine((v) => /^https?:\/\/[^/]/.test(v), { message: 'must be an http:// or https:// URL, e.g. http://127.0.0.1:9000' })
      .optional(),
    region: z.string().min(1).default('us-east-1'),
    forcePathStyle: z.boolean().default(false),
    /** Without these, the AWS SDK's default chain (AWS_ACCESS_KEY_ID…, profiles, instance roles). */
    accessKeyId: z.string().min(1).optional(),
    secretAccessKey: z.string().min(1).optional(),
    sessionToken: z.string().min(1).optional(),
    /** Bytes per multipart part (default 8 MiB); each part in flight is held in memory. */
    partSize: z.number().int().min(MIN_PART_SIZE, `must be at least ${MIN_PART_SIZE} (S3's smallest part)`).optional(),
    /**
     * Answer a cached blob GET with a 307 to a presigned S3 URL valid for `expiresIn`, so that
     * the bytes go from S3 to the client directly. Never for private upstreams.
     */
    redirect: z
      .object({
        enabled: z.boolean().default(false),
        expiresIn: duration
          .prefault('5m')
          .refine((ms) => ms >= 1_000 && ms <= 604_800_000, { message: 'must be from 1s to 7d (what S3 accepts)' }),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((s) => (s.accessKeyId === undefined) === (s.secretAccessKey === undefined), {
    message: 'accessKeyId and secretAccessKey go together',
    path: ['secretAccessKey'],
  });

const unknownType = (options: string) => (issue: { input?: unknown }) => {
  const type = (issue.input as { type?: unknown } | undefined)?.type;
  if (type === 's3') return 's3 holds blobs only: use storage: { blobs: { type: s3, … }, meta: { type: fs or keyv, … } }';
  return `must be one of ${options}`;
};

const blobsSchema = z.discriminatedUnion('type', [fsSchema, s3Schema, keyvSchema], { error: unknownType('fs, s3, keyv') });
const metaSchema = z.discriminatedUnion('type', [fsSchema, keyvSchema], {
  error: (issue) =>
    (issue.input as { type?: unknown } | undefined)?.type === 's3'
      ? 's3 holds blobs only; metadata goes to fs or keyv'
      : 'must be one of fs, keyv',
});

const splitSchema = z.object({ type: z.literal('split'), blobs: blobsSchema, meta: metaSchema }).strict();

const inner = z.discriminatedUnion('type', [fsSchema, keyvSchema, splitSchema], {
  error: unknownType('fs, keyv, or blobs + meta'),
});

export type StorageConfig = z.output<typeof inner>;
export type BlobStorageConfig = z.output<typeof blobsSchema>;
export type MetaStorageConfig = z.output<typeof metaSchema>;
/** What the config file may say: the split form needs no `type`. */
export type StorageConfigInput =
  | z.input<typeof fsSchema>
  | z.input<typeof keyvSchema>
  | (Omit<z.input<typeof splitSchema>, 'type'> & { type?: 'split' });

/** `{ blobs, meta }` without a type is the split form; everything else is told apart by `type`. */
function withSplitType(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || 'type' in value) return value;
  return 'blobs' in value || 'meta' in value ? { type: 'split', ...value } : value;
}

// preprocess types its input as unknown; the cast restores the input type that callers write.
export const storageSchema = z.preprocess(withSplitType, inner) as unknown as z.ZodType<StorageConfig, StorageConfigInput>;

export interface StorageOptions {
  /**
   * Recovery removes only unfinished writes older than this, ms (default 0: all). Processes
   * sharing the storage (replicas, a cluster's workers) set it to `liveFillAge`, or one that
   * recovers would abort another's fills in flight.
   */
  recoverOlderThan?: number;
}

/** What a fill cut at its timeout may still do with its spool: a commit's rename, its own unlink. Moments. */
const CUT_FILL_MARGIN_MS = 10_000;

/**
 * The age past which an unfinished write cannot be a live fill's. A fill creates its spool (or
 * upload) after it starts and is cut `fillTimeout` after it starts, so a file last written longer
 * ago than that belongs to a fill that is over. Not the upstream's stall timeout, though a fill
 * writes as its bytes arrive: a fill also waits without writing (for a lease, for a relay to
 * resume, on its hash and its commit), and only `fill.timeout` bounds all of that.
 */
export function liveFillAge(fillTimeout: number): number {
  return fillTimeout + CUT_FILL_MARGIN_MS;
}

/** Start-up recovery: what a crash left unfinished in the stores is removed before anything is served. */
export async function recoverStorage({ blobs, meta }: Storage): Promise<void> {
  await Promise.all([blobs.recover?.(), meta.recover?.()]);
}

export function createStorage(config: StorageConfig, options: StorageOptions = {}): Storage {
  const { recoverOlderThan } = options;
  switch (config.type) {
    case 'fs':
      return fsStorage({ path: config.path, fsync: config.fsync, recoverOlderThan });
    case 'keyv': {
      // One connection for both halves: load the pair once, hand out each half.
      let pair: Promise<Storage> | undefined;
      const both = () =>
        (pair ??= keyvAdapter().then((m) => m.keyvStorage({ url: config.url, namespace: config.namespace, chunkSize: config.chunkSize, recoverOlderThan })));
      return { blobs: deferredBlobStore(async () => (await both()).blobs), meta: deferredMetadataStore(async () => (await both()).meta) };
    }
    case 'split':
      return { blobs: createBlobStore(config.blobs, options), meta: createMetadataStore(config.meta) };
  }
}

export function createBlobStore(config: BlobStorageConfig, { recoverOlderThan }: StorageOptions = {}): BlobStore {
  switch (config.type) {
    case 'fs':
      return fsBlobStore({ path: config.path, fsync: config.fsync, recoverOlderThan });
    case 'keyv':
      return deferredBlobStore(async () =>
        (await keyvAdapter()).keyvBlobStore({ url: config.url, namespace: config.namespace }, { chunkSize: config.chunkSize, recoverOlderThan }),
      );
    case 's3': {
      const { accessKeyId, secretAccessKey, sessionToken } = config;
      return deferredBlobStore(async () => (await s3Adapter()).s3BlobStore({
        bucket: config.bucket,
        prefix: config.prefix,
        endpoint: config.endpoint,
        region: config.region,
        forcePathStyle: config.forcePathStyle,
        credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, sessionToken } : undefined,
        partSize: config.partSize,
        recoverOlderThan,
      }));
    }
  }
}

/** The blob redirect the config asks for (expiry in seconds), when its blobs are on S3 with redirect enabled. */
export function blobRedirect(config: StorageConfig): { expiresIn: number } | undefined {
  if (config.type !== 'split' || config.blobs.type !== 's3' || !config.blobs.redirect.enabled) return undefined;
  return { expiresIn: Math.floor(config.blobs.redirect.expiresIn / 1000) };
}

export function createMetadataStore(config: MetaStorageConfig): MetadataStore {
  switch (config.type) {
    case 'fs':
      return fsMetadataStore({ path: config.path, fsync: config.fsync });
    case 'keyv':
      return deferredMetadataStore(async () => (await keyvAdapter()).keyvMetadataStore({ url: config.url, namespace: config.namespace }));
  }
}
