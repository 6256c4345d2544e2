/** The storage section: every adapter by config, mix and match, and errors that name the key. */
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from './config.js';
import { digestOf } from './digest.js';
import { blobRedirect, createStorage } from './storage-config.js';
import { pseudoRandomBytes, readSummary, summary } from '../test/conformance/helpers.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../test/helpers/s3.js';

const storageOf = (storage: unknown) => parseConfig({ storage }).storage;

/** The problems parseConfig reports for a storage section. */
function problems(storage: unknown): string[] {
  try {
    parseConfig({ storage });
  } catch (err) {
    return (err as { problems: string[] }).problems;
  }
  throw new Error('the config was accepted');
}

describe('storage config', () => {
  it('keeps the fs form, and the fs default, as they were', () => {
    expect(parseConfig({}).storage).toEqual({ type: 'fs', path: './data', fsync: true });
    expect(storageOf({ type: 'fs', path: '/var/cache/oci', fsync: false })).toEqual({ type: 'fs', path: '/var/cache/oci', fsync: false });
  });

  it('reads keyv, and blobs + meta from two adapters (YAML as in the README)', () => {
    expect(storageOf({ type: 'keyv', url: 'redis://127.0.0.1:6379' })).toEqual({
      type: 'keyv',
      url: 'redis://127.0.0.1:6379',
      namespace: 'oci-mirror',
    });
    const yaml = parseYaml(`
storage:
  blobs:
    type: s3
    bucket: oci-cache
    prefix: mirror/
    endpoint: http://127.0.0.1:9000
    forcePathStyle: true
    accessKeyId: minio
    secretAccessKey: minio-secret
  meta:
    type: keyv
    url: redis://127.0.0.1:6379
    namespace: mirror-a
`) as unknown;
    expect(parseConfig(yaml).storage).toEqual({
      type: 'split',
      blobs: {
        type: 's3',
        bucket: 'oci-cache',
        prefix: 'mirror/',
        endpoint: 'http://127.0.0.1:9000',
        region: 'us-east-1',
        forcePathStyle: true,
        accessKeyId: 'minio',
        secretAccessKey: 'minio-secret',
        // Off unless asked for.
        redirect: { enabled: false, expiresIn: 300_000 },
      },
      meta: { type: 'keyv', url: 'redis://127.0.0.1:6379', namespace: 'mirror-a' },
    });
    expect(blobRedirect(parseConfig(yaml).storage)).toBeUndefined();
    const redirecting = storageOf({ blobs: { type: 's3', bucket: 'b', redirect: { enabled: true, expiresIn: '90s' } }, meta: { type: 'fs', path: '/m' } });
    expect(blobRedirect(redirecting)).toEqual({ expiresIn: 90 });
    expect(storageOf({ blobs: { type: 'keyv', url: 'memory' }, meta: { type: 'fs', path: '/m' } })).toMatchObject({ type: 'split' });
  });

  it.each<[string, unknown, string]>([
    ['s3 on its own', { type: 's3', bucket: 'b' }, 'storage.type: s3 holds blobs only: use storage: { blobs: { type: s3, … }, meta: { type: fs or keyv, … } }'],
    ['an unknown type', { type: 'mongo' }, 'storage.type: must be one of fs, keyv, or blobs + meta'],
    ['an s3 store without a bucket', { blobs: { type: 's3' }, meta: { type: 'fs', path: '/m' } }, 'storage.blobs.bucket: Invalid input: expected string, received undefined'],
    ['half the credentials', { blobs: { type: 's3', bucket: 'b', accessKeyId: 'a' }, meta: { type: 'fs', path: '/m' } }, 'storage.blobs.secretAccessKey: accessKeyId and secretAccessKey go together'],
    ['a part S3 would refuse', { blobs: { type: 's3', bucket: 'b', partSize: 1024 }, meta: { type: 'fs', path: '/m' } }, 'storage.blobs.partSize: must be at least 5242880 (S3\'s smallest part)'],
    ['an endpoint that is no URL', { blobs: { type: 's3', bucket: 'b', endpoint: 'minio:9000' }, meta: { type: 'fs', path: '/m' } }, 'storage.blobs.endpoint: must be an http:// or https:// URL, e.g. http://127.0.0.1:9000'],
    ['a redirect S3 would refuse', { blobs: { type: 's3', bucket: 'b', redirect: { enabled: true, expiresIn: '8d' } }, meta: { type: 'fs', path: '/m' } }, 'storage.blobs.redirect.expiresIn: must be from 1s to 7d (what S3 accepts)'],
    ['metadata in s3', { blobs: { type: 'fs', path: '/b' }, meta: { type: 's3', bucket: 'b' } }, 'storage.meta.type: s3 holds blobs only; metadata goes to fs or keyv'],
    ['a keyv URL it cannot use', { type: 'keyv', url: 'mongodb://x' }, 'storage.url: must be "memory" or a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379'],
    ['a namespace with a colon', { type: 'keyv', url: 'memory', namespace: 'a:b' }, 'storage.namespace: may only hold letters, digits, ".", "_" and "-"'],
    ['a misspelt key', { blobs: { type: 'keyv', url: 'memory', chunksize: 5 }, meta: { type: 'keyv', url: 'memory' } }, 'storage.blobs: Unrecognized key: "chunksize"'],
    ['blobs without meta', { blobs: { type: 'keyv', url: 'memory' } }, 'storage.meta: must be one of fs, keyv'],
  ])('names the key for %s', (_label, storage, problem) => {
    expect(problems(storage)).toEqual([problem]);
  });

  describe('createStorage', () => {
    let s3: RunningS3;
    let dir: string;
    beforeAll(async () => {
      s3 = await startS3();
      dir = await mkdtemp(join(tmpdir(), 'oci-storage-config-'));
    });
    afterAll(async () => {
      await s3?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const data = pseudoRandomBytes(10_000, 61);
    async function roundTrip(storage: ReturnType<typeof createStorage>): Promise<void> {
      await storage.blobs.recover?.();
      await storage.blobs.put(digestOf(data), Readable.from([data]));
      await storage.meta.set('tag/r:1', { digest: digestOf(data) });
      expect(await readSummary(await storage.blobs.read(digestOf(data)))).toEqual(summary(data));
      expect(await storage.meta.get('tag/r:1')).toEqual({ digest: digestOf(data) });
      await Promise.all([storage.blobs.close?.(), storage.meta.close?.()]);
    }

    it('builds S3 blobs beside fs metadata, blobs landing in the bucket under the prefix', async () => {
      const storage = createStorage(
        storageOf({
          blobs: { type: 's3', bucket: s3.bucket, prefix: 'cfg', endpoint: s3.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS },
          meta: { type: 'fs', path: dir, fsync: false },
        }),
      );
      await roundTrip(storage);
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `cfg/blobs/sha256/${digestOf(data).slice(7)}` }));
      expect(head.ContentLength).toBe(data.length);
    });

    it('builds keyv for both, and keyv blobs beside fs metadata', async () => {
      await roundTrip(createStorage(storageOf({ type: 'keyv', url: 'memory' })));
      await roundTrip(createStorage(storageOf({ blobs: { type: 'keyv', url: 'memory', chunkSize: 1000 }, meta: { type: 'fs', path: dir } })));
    });
  });
});
