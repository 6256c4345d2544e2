/**
 * `presign` against a real S3 API (s3rver): the URL serves the blob to a client with no
 * credentials, is bound to GET and to its own signature, and dies after `expiresIn`.
 */
import { createHash, createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf } from '../../src/digest.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../../test/helpers/s3.js';
import { s3BlobStore, type S3BlobStore } from './index.js';

let s3: RunningS3;
let store: S3BlobStore;
const bytes = Buffer.from('presigned layer bytes '.repeat(100));
const digest = digestOf(bytes);

beforeAll(async () => {
  s3 = await startS3();
  store = s3BlobStore({ endpoint: s3.endpoint, bucket: s3.bucket, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, prefix: 'presign/' });
  await store.put(digest, Readable.from([bytes]), { size: bytes.length });
});

afterAll(async () => {
  await store?.close();
  await s3?.destroy();
});

describe('s3BlobStore presign', () => {
  it('gives a URL on the S3 origin that serves the blob without credentials', async () => {
    const url = new URL(await store.presign(digest, { expiresIn: 60 }));
    expect(url.origin).toBe(s3.endpoint);
    expect(url.pathname).toBe(`/${s3.bucket}/presign/blobs/sha256/${digest.slice('sha256:'.length)}`);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('60');
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('is signed for a plain GET with no header but Host (checked here: s3rver does not check SigV4 signatures)', async () => {
    const url = new URL(await store.presign(digest, { expiresIn: 60 }));
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(url.searchParams.get('X-Amz-Signature')).toBe(sigV4QuerySignature('GET', url, S3RVER_CREDENTIALS.secretAccessKey));
    expect(url.searchParams.get('X-Amz-Signature')).not.toBe(sigV4QuerySignature('HEAD', url, S3RVER_CREDENTIALS.secretAccessKey));
  });

  it('is refused once expired', async () => {
    const url = await store.presign(digest, { expiresIn: 1 });
    // X-Amz-Date has whole seconds: wait past the next second boundary plus one.
    await new Promise((r) => setTimeout(r, 2_100));
    const res = await fetch(url);
    expect(res.status).toBe(403);
    expect(await res.text()).toMatch(/expired/i);
  });

  it('rejects an expiry S3 would refuse, and a malformed digest', async () => {
    await expect(store.presign(digest, { expiresIn: 0 })).rejects.toThrow(RangeError);
    await expect(store.presign(digest, { expiresIn: 604_801 })).rejects.toThrow(RangeError);
    await expect(store.presign('sha256:nope', { expiresIn: 60 })).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
  });
});

/**
 * The SigV4 query-string signature of `url` for `method`, computed from AWS's description
 * (sigv4-query-string-auth), independently of the SDK: Host the only signed header, payload unsigned.
 */
function sigV4QuerySignature(method: string, url: URL, secret: string): string {
  const q = url.searchParams;
  const enc = (v: string) => encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...q.entries()]
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [enc(k), enc(v)])
    .sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonical = [method, url.pathname, query, `host:${url.host}`, '', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const [, date, region, service] = q.get('X-Amz-Credential')!.split('/') as [string, string, string, string];
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', q.get('X-Amz-Date'), scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
  return createHmac('sha256', key).update(toSign).digest('hex');
}
