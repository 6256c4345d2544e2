/**
 * Blob redirects to presigned S3 URLs (s3rver as S3): skopeo pulls a cached image through a
 * mirror with `redirect` enabled and gets the blobs' bytes from S3 itself; the blob GET
 * answers 307 to the S3 origin with a short expiry. Off by default (200, streamed by the
 * mirror), and never for a private upstream (the URL is a bearer capability).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf } from '../../src/digest.js';
import { parseConfig } from '../../src/config.js';
import { startServer, type MirrorServer } from '../../src/server.js';
import { pushMultiLayerImage, type Fixture } from '../helpers/images.js';
import { storedSoon } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../helpers/s3.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const PREFIX = 'redirect/';
const tools = requireTools(['docker-registry', 'skopeo']);

describe.skipIf(!tools)('cached blob GETs redirected to presigned S3 URLs', () => {
  let registry: RunningRegistry | undefined;
  let s3: RunningS3 | undefined;
  let work: string;
  let image: Fixture;
  let redirecting: MirrorServer;
  let streaming: MirrorServer;
  let gated: MirrorServer;
  const servers: MirrorServer[] = [];
  /** Blob keys s3rver was asked for with a presigned (query-string signed) GET, in order. */
  const presignedGets: string[] = [];

  const startMirror = async (name: string, redirect: boolean | undefined, upstream: { private?: boolean } = {}) => {
    const blobs = { type: 's3', bucket: s3!.bucket, prefix: PREFIX, endpoint: s3!.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS } as const;
    const server = await startServer(
      parseConfig({
        listen: '127.0.0.1:0',
        storage: { blobs: redirect === undefined ? blobs : { ...blobs, redirect: { enabled: redirect, expiresIn: '2m' } }, meta: { type: 'fs', path: join(work, name) } },
        upstreams: [{ name: 'registry.test', url: registry!.url, ...upstream }],
        fill: { spoolDir: join(work, `${name}-spool`) },
        shutdownGrace: '1s',
      }),
      { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) },
    );
    servers.push(server);
    return server;
  };

  const pull = async (mirror: MirrorServer, name: string): Promise<void> => {
    const dir = join(work, `pull-${name}`);
    await skopeoCopy(`${mirror.host}/${image.ref}`, dir, { timeoutMs: 20_000 });
    await verifyDirPull(dir, image);
  };

  const blobUrl = (mirror: MirrorServer, digest: string) => `${mirror.url}/v2/${image.name}/blobs/${digest}`;
  const keyOf = (digest: string) => `${PREFIX}blobs/${digest.replace(':', '/')}`;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-redirect-'));
    [registry, s3] = await Promise.all([startRegistry(), startS3()]);
    image = await pushMultiLayerImage(registry, { name: 'e2e/redirect' });
    s3.onRequest = ({ method, path, query }) => {
      if (method === 'GET' && 'X-Amz-Signature' in query) presignedGets.push(path.slice(`/${s3!.bucket}/`.length));
    };
    redirecting = await startMirror('redirecting', true);
    streaming = await startMirror('default', undefined);
    gated = await startMirror('private', true, { private: true });
  });

  afterAll(async () => {
    await Promise.allSettled(servers.map((m) => m.close(1_000)));
    await Promise.allSettled([registry?.destroy(), s3?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('skopeo pulls a cached image through the redirecting mirror, its blobs straight from S3', async () => {
    // Cold: nothing is cached yet, so the mirror streams the fills itself.
    await pull(redirecting, 'cold');
    expect(presignedGets).toEqual([]);
    const blobs = redirecting.mirror.storage.blobs;
    for (const b of image.blobs) expect(await storedSoon({ blobs }, b.digest)).toEqual({ size: b.size });

    // Warm: every blob (config and layers) is fetched from S3 by the URL the mirror handed out.
    await pull(redirecting, 'warm');
    expect([...new Set(presignedGets)].sort()).toEqual(image.blobs.map((b) => keyOf(b.digest)).sort());
  });

  it('answers a cached blob GET with 307 to the S3 origin, valid for the configured 2 minutes', async () => {
    const layer = image.blobs.reduce((a, b) => (b.size > a.size ? b : a));
    const res = await fetch(blobUrl(redirecting, layer.digest), { redirect: 'manual' });
    expect(res.status).toBe(307);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('docker-content-digest')).toBe(layer.digest);
    const location = new URL(res.headers.get('location')!);
    expect(location.origin).toBe(s3!.endpoint);
    expect(location.searchParams.get('X-Amz-Expires')).toBe('120');
    expect(location.searchParams.has('X-Amz-Signature')).toBe(true);

    const fromS3 = Buffer.from(await (await fetch(location)).arrayBuffer());
    expect({ digest: digestOf(fromS3), size: fromS3.length }).toEqual({ digest: layer.digest, size: layer.size });
  });

  it('serves HEAD and Range requests itself, redirect or not', async () => {
    const layer = image.blobs.reduce((a, b) => (b.size > a.size ? b : a));
    const head = await fetch(blobUrl(redirecting, layer.digest), { method: 'HEAD', redirect: 'manual' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(layer.size));
    const range = await fetch(blobUrl(redirecting, layer.digest), { headers: { Range: 'bytes=10-19' }, redirect: 'manual' });
    expect(range.status).toBe(206);
    expect(range.headers.get('content-range')).toBe(`bytes 10-19/${layer.size}`);
    expect((await range.arrayBuffer()).byteLength).toBe(10);
  });

  it('streams the blob itself (200) when redirect is not configured: the default', async () => {
    const layer = image.blobs[0]!;
    const before = presignedGets.length;
    const res = await fetch(blobUrl(streaming, layer.digest), { redirect: 'manual' });
    expect(res.status).toBe(200);
    expect(res.headers.get('location')).toBeNull();
    expect(res.headers.get('x-mirror-cache')).toBe('HIT');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(digestOf(bytes)).toBe(layer.digest);
    await pull(streaming, 'default');
    expect(presignedGets.length).toBe(before);
  });

  it('never redirects for a private upstream: the URL would bypass its access check', async () => {
    const layer = image.blobs[0]!;
    const before = presignedGets.length;
    // The upstream (no auth of its own) confirms any client; the blob is cached in the shared bucket.
    const res = await fetch(blobUrl(gated, layer.digest), {
      headers: { Authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` },
      redirect: 'manual',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('location')).toBeNull();
    expect(res.headers.get('x-mirror-cache')).toBe('HIT');
    expect(digestOf(Buffer.from(await res.arrayBuffer()))).toBe(layer.digest);
    // Without credentials it is refused, as before: nothing handed out either.
    const anonymous = await fetch(blobUrl(gated, layer.digest), { redirect: 'manual' });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('location')).toBeNull();
    expect(presignedGets.length).toBe(before);
  });
});
