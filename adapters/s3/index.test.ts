import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  paginateListObjectsV2,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { digestOf } from '../../src/digest.js';
import { blobStoreConformance } from '../../test/conformance/blob-store.js';
import { chunked, collect, pseudoRandomBytes, readSummary, rejection, stallingSource, summary } from '../../test/conformance/helpers.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../../test/helpers/s3.js';
import { MIN_PART_SIZE, s3BlobStore, type S3BlobStore, type S3BlobStoreOptions } from './index.js';

const MiB = 1024 * 1024;

let s3: RunningS3;
let prefixes = 0;

beforeAll(async () => {
  s3 = await startS3();
});

afterAll(async () => {
  await s3?.destroy();
});

/** A store over its own prefix of the one s3rver, so that every test starts empty. */
function freshStore(options: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  return s3BlobStore({
    endpoint: s3.endpoint,
    bucket: s3.bucket,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    prefix: `t${++prefixes}/`,
    partSize: MIN_PART_SIZE,
    ...options,
  });
}

/** Every object key under `prefix`. */
async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const page of paginateListObjectsV2({ client: s3.client }, { Bucket: s3.bucket, Prefix: prefix })) {
    for (const o of page.Contents ?? []) keys.push(o.Key!);
  }
  return keys.sort();
}

/** Multipart uploads S3 reports under `prefix`, plus the ones s3rver keeps on disk. */
async function uploadsUnder(prefix: string): Promise<{ listed: number; onDisk: number }> {
  const { Uploads = [] } = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: prefix }));
  return { listed: Uploads.length, onDisk: await s3.uploadsOnDisk(prefix) };
}

/** A multipart upload with one part, as a process killed mid-put leaves it. */
async function leaveUpload(key: string): Promise<void> {
  const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
  await s3.client.send(
    new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber: 1, Body: pseudoRandomBytes(1000, 5) }),
  );
}

blobStoreConformance('s3 (s3rver)', async () => {
  const store = freshStore();
  return {
    store,
    cleanup: async () => {},
    // Open uploads (as S3 lists them and as s3rver holds them) and any object beside blobs/.
    async countTemporary() {
      const { listed, onDisk } = await uploadsUnder(store.prefix);
      const stray = (await keysUnder(store.prefix)).filter((k) => !k.startsWith(`${store.prefix}blobs/`));
      return listed + onDisk + stray.length;
    },
    async leaveTemporary() {
      await leaveUpload(`${store.prefix}blobs/sha256/${'ab'.repeat(32)}`);
      await leaveUpload(`${store.prefix}blobs/sha512/${'cd'.repeat(64)}`);
    },
    async recoverOlderThan(ms) {
      const other = freshStore({ prefix: store.prefix, recoverOlderThan: ms });
      try {
        await other.recover();
      } finally {
        await other.close();
      }
    },
  };
});

describe('s3 adapter', () => {
  let store: S3BlobStore;
  const big = pseudoRandomBytes(12 * MiB + 4321, 31);
  const bigDigest = digestOf(big);
  const bigKey = () => `${store.prefix}blobs/sha256/${bigDigest.slice('sha256:'.length)}`;

  beforeEach(() => {
    store = freshStore();
  });

  afterEach(async () => {
    s3.onRequest = undefined;
    s3.shim = true;
    await store.close();
  });

  async function expectNothingLeft(): Promise<void> {
    expect(await store.stat(bigDigest)).toBeUndefined();
    expect(await keysUnder(store.prefix)).toEqual([]);
    expect(await uploadsUnder(store.prefix)).toEqual({ listed: 0, onDisk: 0 });
  }

  it('keeps blobs at <prefix>blobs/<alg>/<hex> and nothing else', async () => {
    const small = pseudoRandomBytes(1000, 1);
    await store.put(digestOf(small), Readable.from([small]));
    await store.put(digestOf(small, 'sha512'), Readable.from([small]));
    await store.put(bigDigest, chunked(big, 300_000));
    expect(await keysUnder(store.prefix)).toEqual(
      [bigKey(), `${store.prefix}blobs/sha256/${digestOf(small).slice(7)}`, `${store.prefix}blobs/sha512/${digestOf(small, 'sha512').slice(7)}`].sort(),
    );
    expect(await readSummary(await store.read(bigDigest, { start: 5 * MiB - 2, end: 10 * MiB + 1 }))).toEqual(
      summary(big.subarray(5 * MiB - 2, 10 * MiB + 2)),
    );
    expect(await uploadsUnder(store.prefix)).toEqual({ listed: 0, onDisk: 0 });
  });

  it('sends a small blob as one PutObject and a large one in parts of the configured size', async () => {
    const requests: string[] = [];
    s3.onRequest = ({ method, query }) => {
      if (method === 'PUT' || method === 'POST') requests.push(`${method} ${'partNumber' in query ? 'part' : 'uploadId' in query ? 'complete' : 'uploads' in query ? 'create' : 'object'}`);
    };
    const small = pseudoRandomBytes(MIN_PART_SIZE - 1, 2);
    await store.put(digestOf(small), chunked(small, 65536));
    expect(requests).toEqual(['PUT object']);
    requests.length = 0;
    await store.put(bigDigest, chunked(big, 65536), { size: big.length });
    expect(requests).toEqual(['POST create', 'PUT part', 'PUT part', 'PUT part', 'POST complete']);
  });

  it('shows nothing while parts are uploaded, and the blob only once verified', async () => {
    const source = stallingSource(big.subarray(0, 6 * MiB), big.subarray(6 * MiB));
    const put = store.put(bigDigest, source.source);
    await source.taken;
    // The first part is in S3, in an upload that no listing, stat or read shows.
    await vi.waitFor(async () => expect(await s3.uploadsOnDisk(store.prefix)).toBe(1), { timeout: 5_000 });
    expect(await store.stat(bigDigest)).toBeUndefined();
    expect(await store.read(bigDigest)).toBeUndefined();
    expect(await keysUnder(store.prefix)).toEqual([]);
    source.finish();
    expect(await put).toEqual({ size: big.length });
    expect(await readSummary(await store.read(bigDigest))).toEqual(summary(big));
    expect(await uploadsUnder(store.prefix)).toEqual({ listed: 0, onDisk: 0 });
  });

  it('aborts the multipart upload when the content does not match, after parts were sent', async () => {
    const corrupt = Buffer.from(big);
    corrupt[corrupt.length - 1]! ^= 1;
    await expect(store.put(bigDigest, chunked(corrupt, MiB))).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    await expectNothingLeft();
  });

  it('aborts the multipart upload when aborted after parts were sent', async () => {
    const controller = new AbortController();
    const source = stallingSource(big.subarray(0, 11 * MiB), big.subarray(11 * MiB));
    const put = store.put(bigDigest, source.source, { signal: controller.signal });
    await source.taken;
    await vi.waitFor(async () => expect(await s3.uploadsOnDisk(store.prefix)).toBe(1), { timeout: 5_000 });
    const reason = new Error('client went away');
    controller.abort(reason);
    expect(await rejection(put)).toBe(reason);
    await expectNothingLeft();
  });

  it('fails a put when S3 goes away mid-upload, and aborts the upload once S3 is back', async () => {
    let parts = 0;
    s3.onRequest = ({ method, query }) => {
      // The moment the second part arrives, S3 becomes unreachable.
      if (method === 'PUT' && 'partNumber' in query && ++parts === 2) void s3.stop();
    };
    const err = await rejection(store.put(bigDigest, chunked(big, MiB), { size: big.length }));
    expect(err).toBeInstanceOf(Error);
    s3.onRequest = undefined;
    await s3.start();
    // The put's own abort could not reach S3; the store keeps trying in the background.
    await vi.waitFor(async () => expect(await uploadsUnder(store.prefix)).toEqual({ listed: 0, onDisk: 0 }), {
      timeout: 10_000,
      interval: 200,
    });
    await expectNothingLeft();
    // And the store works again.
    await store.put(bigDigest, chunked(big, MiB));
    expect(await store.stat(bigDigest)).toEqual({ size: big.length });
  });

  it('recover() aborts only the uploads older than recoverOlderThan', async () => {
    const patient = freshStore({ recoverOlderThan: 60_000 });
    await leaveUpload(`${patient.prefix}blobs/sha256/${'ab'.repeat(32)}`);
    await patient.recover();
    expect(await uploadsUnder(patient.prefix)).toEqual({ listed: 1, onDisk: 1 });
    await freshStore({ prefix: patient.prefix }).recover();
    expect(await uploadsUnder(patient.prefix)).toEqual({ listed: 0, onDisk: 0 });
    await patient.close();
  });

  it('recover() leaves uploads beside its prefix alone', async () => {
    const other = `${store.prefix}elsewhere/blobs/sha256/${'ab'.repeat(32)}`;
    await leaveUpload(other);
    await store.recover();
    expect(await uploadsUnder(`${store.prefix}elsewhere/`)).toEqual({ listed: 1, onDisk: 1 });
    await freshStore({ prefix: `${store.prefix}elsewhere` }).recover();
    expect(await uploadsUnder(store.prefix)).toEqual({ listed: 0, onDisk: 0 });
  });

  it('recover() passes over a store that cannot list uploads (s3rver without the test shim)', async () => {
    s3.shim = false;
    try {
      await store.recover();
    } finally {
      s3.shim = true;
    }
  });

  it('list() skips objects it could not have written', async () => {
    const small = pseudoRandomBytes(10, 3);
    await store.put(digestOf(small), Readable.from([small]));
    const hex = digestOf(small).slice(7);
    for (const key of [`blobs/sha256/${hex}.bak`, `blobs/sha256/${hex.toUpperCase()}`, `blobs/md5/${hex.slice(0, 32)}`, 'blobs/README', `blobs/sha256/x/${hex}`]) {
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${store.prefix}${key}`, Body: 'x' }));
    }
    expect(await collect(store.list())).toEqual([{ digest: digestOf(small), size: 10 }]);
  });

  it('normalises the prefix and does not destroy an injected client', async () => {
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { ...S3RVER_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    const injected = s3BlobStore({ client, bucket: s3.bucket, prefix: `/${store.prefix}nested` });
    expect(injected.prefix).toBe(`${store.prefix}nested/`);
    const small = pseudoRandomBytes(10, 4);
    await injected.put(digestOf(small), Readable.from([small]));
    await injected.close();
    expect(await keysUnder(store.prefix)).toEqual([`${store.prefix}nested/blobs/sha256/${digestOf(small).slice(7)}`]);
    client.destroy();
  });

  it('refuses a part size S3 would refuse', () => {
    expect(() => freshStore({ partSize: MIN_PART_SIZE - 1 })).toThrow(/partSize/);
    expect(() => freshStore({ bucket: '' })).toThrow(/bucket/);
  });
});
