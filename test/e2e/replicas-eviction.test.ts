/**
 * Eviction in a replicated deployment, as it is configured: two mirror servers over one S3
 * bucket (s3rver) and one Redis (metadata and leases), passes on the clock. Pulls spread over
 * both replicas put the shared store over its budget; the replicas take turns, so the store
 * comes back under budget with each removal made once, the least recently used (by either
 * replica) first, and both replicas agree on what the store holds.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EvictionEvent } from '../../src/events/index.js';
import { parseConfig } from '../../src/config.js';
import { startServer, type MirrorServer } from '../../src/server.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../helpers/redis.js';
import { freePort } from '../helpers/registry.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../helpers/s3.js';
import { requireTool } from '../helpers/tools.js';

const KB = 1000;
const BLOB = 100 * KB;
const BUDGET = 6 * BLOB;
const SECRET = 'replica-secret-for-tests';

describe.skipIf(!requireTool('redis-server', REDIS_INSTALL_HINT))('eviction across mirror replicas on S3 and Redis', () => {
  let s3: RunningS3 | undefined;
  let redis: RunningRedis | undefined;
  let upstream: FakeUpstream | undefined;
  let work: string;
  const servers: MirrorServer[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-evict-'));
    [s3, redis, upstream] = await Promise.all([startS3(), startRedis(), startFakeUpstream()]);
  });
  afterAll(async () => {
    await Promise.allSettled(servers.map((s) => s.close(500)));
    await Promise.allSettled([s3?.destroy(), redis?.destroy(), upstream?.close()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  const replica = async (): Promise<MirrorServer> => {
    const port = await freePort();
    const server = await startServer(
      parseConfig({
        listen: `127.0.0.1:${port}`,
        storage: {
          blobs: { type: 's3', bucket: s3!.bucket, prefix: 'evict', endpoint: s3!.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS },
          meta: { type: 'keyv', url: redis!.url, namespace: 'evict' },
        },
        upstreams: [{ name: 'registry.test', url: upstream!.url, timeouts: { connect: '2s', headers: '5s', body: '5s' } }],
        // Passes (and access-time flushes) every 200 ms: what was used in the last 600 ms stays.
        cache: { maxBytes: BUDGET, evictionInterval: '200ms' },
        fill: { spoolDir: join(work, `spool-${port}`) },
        shutdownGrace: '1s',
        replication: { redis: redis!.url, advertise: `http://127.0.0.1:${port}`, secret: SECRET, namespace: 'evict' },
      }),
      { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) },
    );
    servers.push(server);
    return server;
  };

  it('brings the shared store under budget once, oldest first, whichever replica pulled what', async () => {
    const [a, b] = [await replica(), await replica()];
    const evicted: EvictionEvent[] = [];
    for (const s of [a, b]) s.mirror.events.on('eviction', (e) => evicted.push(e));

    const pulled: string[] = [];
    for (let i = 0; i < 10; i++) {
      const digest = upstream!.addBlob(randomBytes(BLOB));
      const via = i % 2 ? b : a;
      const res = await raw(`${via.url}/v2/team/app/blobs/${digest}`);
      expect(res.status).toBe(200);
      await waitFor(() => via.mirror.fills.size === 0, 10_000, 'the fill to commit');
      pulled.push(digest);
    }

    const held = async () => {
      const digests: string[] = [];
      for await (const { digest } of a.mirror.storage.blobs.list()) digests.push(digest);
      return digests;
    };
    await waitFor(async () => (await held()).length <= BUDGET / BLOB, 20_000, 'the store to come under budget');
    const kept = await held();
    // The four pulled first went, each removed once, by whichever replica had the turn.
    expect(kept.sort()).toEqual(pulled.slice(4).sort());
    expect(evicted.map((e) => e.digest).sort()).toEqual(pulled.slice(0, 4).sort());
    // Both replicas see the store as it is (their storage gauges agree).
    await waitFor(() => a.mirror.eviction!.stats().bytes === BUDGET && b.mirror.eviction!.stats().bytes === BUDGET, 5_000, 'both replicas to see the store as it is');
  });
});
