/**
 * Eviction across replicas: evictors over one shared store (a real fs directory) that take
 * turns through a real Redis. One replica evicts at a time; each turn starts from what the
 * store says now (content, removals and access times written by the others), and what another
 * replica serves or has just cached stays. Time is a fake clock, shared by the replicas, so
 * that "an hour later" takes no hour.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fsStorage } from '../../adapters/fs/index.js';
import { manifestKey } from '../../src/manifests/keys.js';
import { digestOf } from '../../src/digest.js';
import { MirrorEvents, type CacheEvent, type EvictionEvent } from '../../src/events/index.js';
import { createEviction, leasedTurns, type Eviction, type EvictionOptions } from '../../src/eviction/index.js';
import type { Fill, FillLease } from '../../src/fill/index.js';
import { redisFillLease } from '../../src/replication/redis-lease.js';
import type { Storage } from '../../src/storage.js';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../helpers/redis.js';
import { requireTool } from '../helpers/tools.js';

const HOUR = 3_600_000;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Replica {
  name: string;
  events: MirrorEvents;
  eviction: Eviction;
  evicted: EvictionEvent[];
  lease: FillLease;
}

describe.skipIf(!requireTool('redis-server', REDIS_INSTALL_HINT))('eviction across replicas', () => {
  let redis: RunningRedis;
  let dir: string;
  let storage: Storage;
  let clock: number;
  let run = 0;
  let namespace: string;
  const replicas: Replica[] = [];
  const leases: FillLease[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.destroy();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oci-evict-replicas-'));
    storage = fsStorage({ path: dir, fsync: false });
    clock = Date.UTC(2026, 0, 1);
    namespace = `evict-replicas-${++run}`;
  });
  afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.eviction.close()));
    await Promise.all(leases.splice(0).map((l) => l.close()));
    await rm(dir, { recursive: true, force: true });
  });

  const lease = (advertise: string) => {
    const l = redisFillLease({ url: redis.url, advertise, namespace, kind: 'eviction-lease' });
    leases.push(l);
    return l;
  };

  /** A replica's evictor over the shared store; passes run only when the test asks. */
  async function replica(name: string, limits: Pick<EvictionOptions, 'maxBytes' | 'ttl'>, filling = new Set<string>()): Promise<Replica> {
    const events = new MirrorEvents();
    const l = lease(`http://${name}:5000`);
    const eviction = createEviction({
      storage,
      events,
      // Only whether a digest has a fill in flight matters to eviction.
      fills: { get: (digest) => (filling.has(digest) ? ({} as Fill) : undefined) },
      ...limits,
      interval: 2 ** 31 - 1,
      flushInterval: 2 ** 31 - 1,
      recentMs: 10 * 60_000,
      batch: 100,
      now: () => clock,
      turns: leasedTurns(l),
    });
    const r: Replica = { name, events, eviction, evicted: [], lease: l };
    events.on('eviction', (e) => r.evicted.push(e));
    replicas.push(r);
    await eviction.ready;
    return r;
  }

  /** A blob cached through `via` now (as a fill or a warm-up tells its replica). */
  async function cache(via: Replica, size = 1000): Promise<string> {
    const bytes = randomBytes(size);
    const digest = digestOf(bytes);
    await storage.blobs.put(digest, Readable.from([bytes]), { size });
    via.events.emit('stored', { digest, kind: 'blob', size });
    return digest;
  }

  /** A cached manifest referencing `layers`, cached through `via` now. */
  async function cacheManifest(via: Replica, layers: string[]): Promise<string> {
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: layers[0], size: 1000 },
        layers: layers.slice(1).map((digest) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: 1000 })),
      }),
    );
    const digest = digestOf(body);
    await storage.blobs.put(digest, Readable.from([body]), { size: body.length });
    await storage.meta.set(manifestKey(digest), { mediaType: OCI_MANIFEST, size: body.length });
    via.events.emit('stored', { digest, kind: 'manifest', size: body.length });
    return digest;
  }

  /** A client's request for `digest` on `via`; the returned function ends its response. */
  function serve(via: Replica, digest: string, size = 1000): () => void {
    const e: CacheEvent = { kind: 'blob', result: 'HIT', upstream: 'registry.test', repository: 'team/app', digest, method: 'GET', size };
    via.events.emit('cache', e);
    return () => via.events.emit('served', { ...e, status: 200, bytes: size, complete: true, durationMs: 1 });
  }

  const stored = async (digest: string) => (await storage.blobs.stat(digest)) !== undefined;

  it('runs on one replica at a time: while another holds the turn a pass removes nothing', async () => {
    const a = await replica('a', { maxBytes: 3000 });
    const blobs = [];
    for (let i = 0; i < 5; i++) {
      blobs.push(await cache(a));
      clock += 1;
    }
    await a.eviction.flush();
    const b = await replica('b', { maxBytes: 3000 });
    expect(b.eviction.stats()).toEqual({ bytes: 5000, objects: 5 });
    clock += HOUR;

    // Another replica (or `oci-mirror gc`) is mid-pass.
    const other = await lease('http://gc:0').claim('eviction');
    expect(other.owner).toBe(true);
    expect(await a.eviction.run()).toMatchObject({ evicted: 0, elsewhere: true });
    expect(await b.eviction.run()).toMatchObject({ evicted: 0, elsewhere: true });
    for (const d of blobs) expect(await stored(d)).toBe(true);
    if (other.owner) await other.release();

    // Both at once: whoever has the turn evicts, and the other, in its turn, finds the work
    // done rather than redoing it from its stale index.
    const passes = await Promise.all([a.eviction.run(), b.eviction.run()]);
    const removed = [];
    for (const d of blobs) if (!(await stored(d))) removed.push(d);
    expect(removed).toHaveLength(2);
    expect(passes.reduce((n, p) => n + p.evicted, 0)).toBe(2);
    expect([...a.evicted, ...b.evicted].map((e) => e.digest).sort()).toEqual(removed.sort());
    // The oldest two, by the access times both replicas share.
    expect(removed.sort()).toEqual(blobs.slice(0, 2).sort());
  });

  it('starts each turn from the shared store: what others cached, removed and last used', async () => {
    const a = await replica('a', { maxBytes: 2000 });
    const b = await replica('b', { maxBytes: 2000 });
    const q = await cache(a);
    clock += 1;
    const p = await cache(a);
    clock += HOUR;
    // q is pulled again, on b; and r is cached through b alone.
    serve(b, q)();
    const r = await cache(b);
    await b.eviction.flush();
    clock += HOUR;
    // a's own events say 2000 bytes, q older than p; the store says 3000 bytes, p the oldest.
    expect(a.eviction.stats().bytes).toBe(2000);
    expect(await a.eviction.run()).toMatchObject({ evicted: 1 });
    expect(await stored(p)).toBe(false);
    expect(await stored(q)).toBe(true);
    expect(await stored(r)).toBe(true);
    expect(a.eviction.stats()).toEqual({ bytes: 2000, objects: 2 });

    // b's next turn learns that p is gone instead of counting it.
    clock += HOUR;
    expect(await b.eviction.run()).toMatchObject({ evicted: 0 });
    expect(b.eviction.stats()).toEqual({ bytes: 2000, objects: 2 });
    expect(b.evicted).toEqual([]);
  });

  it('keeps what another replica is serving, however long ago it was first pulled', async () => {
    const a = await replica('a', { ttl: HOUR });
    const b = await replica('b', { ttl: HOUR });
    const s = await cache(a);
    const t = await cache(a);
    const end = serve(b, s); // a slow download on b, still in progress
    clock += 3 * HOUR;
    await b.eviction.flush(); // what is being served counts as used at every flush
    expect(await a.eviction.run()).toMatchObject({ evicted: 1 });
    expect(await stored(t)).toBe(false);
    expect(await stored(s)).toBe(true);

    end();
    clock += 2 * HOUR;
    await b.eviction.flush();
    expect(await a.eviction.run()).toMatchObject({ evicted: 1 });
    expect(await stored(s)).toBe(false);
  });

  it('shares the access time of a pull whose fill outlasted a flush', async () => {
    const filling = new Set<string>();
    const a = await replica('a', { maxBytes: 1000 }, filling);
    const b = await replica('b', { maxBytes: 1000 });
    // x is pulled through a: the miss is at this time, and the fill runs past a flush.
    const bytes = randomBytes(1000);
    const x = digestOf(bytes);
    const miss: CacheEvent = { kind: 'blob', result: 'MISS', upstream: 'registry.test', repository: 'team/app', digest: x, method: 'GET' };
    filling.add(x);
    a.events.emit('cache', miss);
    await a.eviction.flush();
    await storage.blobs.put(x, Readable.from([bytes]), { size: 1000 });
    filling.delete(x);
    a.events.emit('fill:end', { digest: x, outcome: 'committed', bytes: 1000, source: 'upstream', durationMs: 1 });
    a.events.emit('served', { ...miss, status: 200, bytes: 1000, complete: true, durationMs: 1 });
    clock += 1;
    const y = await cache(b);
    clock += 1;
    await a.eviction.flush();
    await b.eviction.flush();
    clock += HOUR;
    // b learns of x only now, from the store: without a's record it would count x as new, and
    // remove y, the one used last.
    expect(await b.eviction.run()).toMatchObject({ evicted: 1 });
    expect(await stored(x)).toBe(false);
    expect(await stored(y)).toBe(true);
  });

  it('keeps a blob that a manifest cached on another replica refers to', async () => {
    const a = await replica('a', { ttl: HOUR });
    const b = await replica('b', { ttl: HOUR });
    const config = await cache(a);
    const layer = await cache(a);
    const lone = await cache(a);
    clock += 2 * HOUR;
    // The client had the layers already: only the manifest is new, and only b knows of it.
    const manifest = await cacheManifest(b, [config, layer]);
    await b.eviction.flush();
    clock += 20 * 60_000;
    expect(await a.eviction.run()).toMatchObject({ evicted: 1 });
    expect(await stored(lone)).toBe(false);
    for (const d of [manifest, config, layer]) expect(await stored(d)).toBe(true);
  });
});
