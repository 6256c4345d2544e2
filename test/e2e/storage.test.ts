/**
 * skopeo pulls through mirrors whose storage is S3 (s3rver) + Redis metadata, and Keyv on
 * Redis, from a real docker-registry; then again with that registry stopped and the mirrors
 * restarted over the same storage. And S3 going away in the middle of a fill: whatever the
 * client got, nothing half-written is left in the bucket, and no multipart upload either.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { digestOf } from '../../src/digest.js';
import { parseConfig, type MirrorConfigInput } from '../../src/config.js';
import { startServer, type MirrorServer } from '../../src/server.js';
import { collect } from '../conformance/helpers.js';
import { pushBigImage, pushDockerManifestList, pushMultiLayerImage, pushOciIndex, type Fixture } from '../helpers/images.js';
import { terminateAll } from '../helpers/processes.js';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../helpers/redis.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../helpers/s3.js';
import { requireTool, requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const TAG_TTL_MS = 1_000;
const MiB = 1024 * 1024;

const tools = requireTools(['docker-registry', 'skopeo']);
const redisInstalled = requireTool('redis-server', REDIS_INSTALL_HINT);

describe.skipIf(!tools || !redisInstalled)('skopeo through mirrors on S3 and on Keyv', () => {
  let registry: RunningRegistry | undefined;
  let s3: RunningS3 | undefined;
  let redis: RunningRedis | undefined;
  let work: string;
  let fixtures: Fixture[];
  let outage: Fixture;
  let pulls = 0;
  const mirrors = new Map<string, MirrorServer>();

  const storages: Record<string, () => MirrorConfigInput['storage']> = {
    'S3 blobs + Redis metadata': () => ({
      blobs: { type: 's3', bucket: s3!.bucket, prefix: 'e2e', endpoint: s3!.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS },
      meta: { type: 'keyv', url: redis!.url, namespace: 'e2e-s3' },
    }),
    'Keyv on Redis': () => ({ type: 'keyv', url: redis!.url, namespace: 'e2e-keyv' }),
  };

  const startMirror = (storage: MirrorConfigInput['storage']): Promise<MirrorServer> =>
    startServer(
      parseConfig({
        listen: '127.0.0.1:0',
        storage,
        upstreams: [{ name: 'registry.test', url: registry!.url, timeouts: { connect: '2s', headers: '5s', body: '5s' } }],
        cache: { tagTtl: `${TAG_TTL_MS}ms` },
        fill: { spoolDir: join(work, 'spool') },
        shutdownGrace: '2s',
      }),
      { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) },
    );

  const pull = async (mirror: MirrorServer, fixture: Fixture): Promise<void> => {
    const dir = join(work, `pull-${++pulls}`);
    await skopeoCopy(`${mirror.host}/${fixture.ref}`, dir, { all: true, timeoutMs: 20_000 });
    await verifyDirPull(dir, fixture);
    await rm(dir, { recursive: true, force: true });
  };

  const uploadsLeft = async (prefix: string) => {
    const { Uploads = [] } = await s3!.client.send(new ListMultipartUploadsCommand({ Bucket: s3!.bucket, Prefix: prefix }));
    return { listed: Uploads.length, onDisk: await s3!.uploadsOnDisk(prefix) };
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-storage-'));
    [registry, s3, redis] = await Promise.all([startRegistry(), startS3(), startRedis()]);
    fixtures = [
      await pushMultiLayerImage(registry),
      await pushOciIndex(registry),
      await pushDockerManifestList(registry),
      // Its big layer goes to S3 in three parts, and to Keyv in 13 chunks.
      await pushBigImage(registry, { name: 'e2e/storage-big', size: 20 * MiB, seed: 'storage' }),
    ];
    outage = await pushBigImage(registry, { name: 'e2e/s3-outage', size: 20 * MiB, seed: 'outage' });
  });

  afterAll(async () => {
    await Promise.allSettled([...mirrors.values()].map((m) => m.close(1_000)));
    await Promise.allSettled([registry?.destroy(), s3?.destroy(), redis?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(Object.keys(storages))('pulls every fixture through a mirror on %s, into that storage', async (name) => {
    const mirror = await startMirror(storages[name]!());
    mirrors.set(name, mirror);
    for (const fixture of fixtures) await pull(mirror, fixture);
    // Clients are served from the fill as it streams; the commit to storage may land just after.
    const expected = fixtures.flatMap((f) => f.blobs).map((b) => ({ digest: b.digest, size: b.size }));
    await vi.waitFor(async () => expect(await collect(mirror.mirror.storage.blobs.list())).toEqual(expect.arrayContaining(expected)), {
      timeout: 10_000,
    });
    // s3rver shows a completed object before it drops the upload's folder: an upload still listed
    // a moment after its blob appeared is finishing, not left behind (one left behind stays).
    await vi.waitFor(async () => expect(await uploadsLeft('e2e/')).toEqual({ listed: 0, onDisk: 0 }), { timeout: 10_000, interval: 250 });
  });

  // Timing-bound by nature (S3 is stopped at the first part, under whatever else CI runs): one retry.
  it('leaves nothing half-written when S3 goes away in the middle of a fill', { retry: 1, timeout: 120_000 }, async () => {
    // A prefix of its own per attempt, so that a retry fills again instead of finding the layer.
    const prefix = `outage-${Date.now()}/`;
    const storage = {
      blobs: { type: 's3', bucket: s3!.bucket, prefix, endpoint: s3!.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS },
      meta: { type: 'keyv', url: 'memory' },
    } as const;
    const mirror = await startMirror(storage);
    mirrors.set('outage', mirror);
    const big = outage.blobs.reduce((a, b) => (b.size > a.size ? b : a));
    let stopped = false;
    s3!.onRequest = ({ method, query }) => {
      // S3 becomes unreachable as the first part of the big layer arrives.
      if (!stopped && method === 'PUT' && 'partNumber' in query) {
        stopped = true;
        void s3!.stop();
      }
    };
    const dir = join(work, 'pull-outage');
    // The client may get the whole layer from the fill's spool (verified bytes) or an error; never wrong bytes.
    const outcome = await skopeoCopy(`${mirror.host}/${outage.ref}`, dir, { all: true, timeoutMs: 20_000 }).then(
      () => verifyDirPull(dir, outage).then(() => 'pulled'),
      (err: Error) => `failed: ${err.message.split('\n')[0]}`,
    );
    expect(stopped).toBe(true);
    s3!.onRequest = undefined;
    await s3!.start();

    // The put's own abort could not reach S3; the store aborts the upload once S3 is back.
    // The background abort backs off up to 15 s between tries while S3 is away.
    await vi.waitFor(async () => expect(await uploadsLeft(prefix)).toEqual({ listed: 0, onDisk: 0 }), { timeout: 45_000, interval: 250 });
    const blobs = mirror.mirror.storage.blobs;
    // The layer may be absent, or present because the SDK's retry of a part outlived the outage
    // (S3 came back in time): then it must be whole. What did land is whole and verified.
    const landed = await blobs.stat(big.digest);
    if (landed) expect(landed, `after "${outcome}"`).toEqual({ size: big.size });
    for (const { digest, size } of await collect(blobs.list())) {
      const bytes = Buffer.concat(await collect((await blobs.read(digest))!));
      expect({ digest: digestOf(bytes), size: bytes.length }).toEqual({ digest, size });
    }

    // With S3 back, the same pull fills the cache (the commit may land just after the client is served).
    await pull(mirror, outage);
    await vi.waitFor(async () => expect(await blobs.stat(big.digest)).toEqual({ size: big.size }), { timeout: 10_000 });
    expect(await uploadsLeft(prefix)).toEqual({ listed: 0, onDisk: 0 });
  });

  describe('with the upstream registry stopped and the mirrors restarted', () => {
    beforeAll(async () => {
      await registry!.stop();
      // New mirrors over the same storage: what was cached must survive a restart.
      for (const name of Object.keys(storages)) {
        await mirrors.get(name)?.close(1_000);
        mirrors.set(name, await startMirror(storages[name]!()));
      }
      await sleep(TAG_TTL_MS + 200);
    });

    it.each(Object.keys(storages))('pulls every fixture from a mirror on %s', async (name) => {
      for (const fixture of fixtures) await pull(mirrors.get(name)!, fixture);
    });
  });
});
