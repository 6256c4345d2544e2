/** The Redis lease against a real redis-server: exclusive, renewed while held, expiring when not, released only by its holder. */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../../test/helpers/redis.js';
import { requireTool } from '../../test/helpers/tools.js';
import type { FillLease } from '../fill/lease.js';
import { redisFillLease, type RedisLeaseOptions } from './redis-lease.js';

const D = `sha256:${'a'.repeat(64)}`;

describe.skipIf(!requireTool('redis-server', REDIS_INSTALL_HINT))('redis fill lease', () => {
  let redis: RunningRedis | undefined;
  const leases: FillLease[] = [];
  let run = 0;
  /** Two replicas' leases over one fresh key space. */
  const pair = (options: Partial<RedisLeaseOptions> = {}): [FillLease, FillLease] => {
    const namespace = `lease-test-${++run}`;
    const make = (advertise: string) => redisFillLease({ url: redis!.url, advertise, namespace, ...options });
    const both: [FillLease, FillLease] = [make('http://x:1'), make('http://y:1')];
    leases.push(...both);
    return both;
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await Promise.allSettled(leases.map((l) => l.close()));
    await redis?.destroy();
  });

  it('gives a digest to one claimant, tells the others who holds it, and frees it on release', async () => {
    const [x, y] = pair();
    const won = await x.claim(D);
    expect(won.owner).toBe(true);
    const lost = await y.claim(D);
    expect(lost).toMatchObject({ owner: false, holder: 'http://x:1' });
    expect(await y.current(D)).toBe(lost.owner ? 'unexpected' : lost.id);
    if (won.owner) await won.release();
    expect(await y.current(D)).toBeUndefined();
    expect((await y.claim(D)).owner).toBe(true);
  });

  it('renews while held', async () => {
    // Renewal is a timer in this process, which a loaded machine can hold up for hundreds of
    // milliseconds: the lifetime leaves it 900 ms, and the wait still outlasts that lifetime.
    const [x, y] = pair({ ttlMs: 1_000, renewMs: 100 });
    expect((await x.claim(D)).owner).toBe(true);
    await sleep(1_500);
    expect((await y.claim(D)).owner).toBe(false);
  });

  it('expires when not renewed, and the old holder\'s release leaves the new claim alone', async () => {
    // Renewal slower than the lifetime: the holder is as good as dead.
    const [x, y] = pair({ ttlMs: 300, renewMs: 60_000 });
    const old = await x.claim(D);
    await sleep(450);
    const taken = await y.claim(D);
    expect(taken.owner).toBe(true);
    if (old.owner) await old.release();
    expect(await x.current(D)).toMatch(/ http:\/\/y:1$/);
  });
});
