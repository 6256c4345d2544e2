/** The status collector without a browser or a server: sampling, caps, fills and what each viewer may see. */
import { describe, expect, it } from 'vitest';
import type { CachedImage } from '../admin/index.js';
import { MirrorEvents, type CacheEvent } from '../events/index.js';
import type { Fill } from '../fill/index.js';
import { createMetrics } from '../metrics/index.js';
import {
  aggregate,
  createLargest,
  createPullCounter,
  createSampler,
  createStatus,
  readFigures,
  Ring,
  trackFills,
  type StatusSource,
} from './index.js';
import type { Storage } from '../storage.js';

const PUBLIC = 'registry.test';
const SECRET = 'secret.test';

function cacheEvent(over: Partial<CacheEvent>): CacheEvent {
  return { kind: 'manifest', result: 'MISS', upstream: PUBLIC, repository: 'team/app', digest: 'sha256:aa', method: 'GET', ...over };
}

function image(upstream: string, repository: string, tag: string, digest: string, size: number): CachedImage {
  return {
    upstream,
    repository,
    tag,
    ref: `${upstream}/${repository}:${tag}`,
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    platforms: [],
    size,
    manifests: { cached: 1, total: 1 },
    blobs: { cached: 1, total: 1 },
    complete: true,
    lastAccess: 0,
  };
}

/** Enough of a Fill for the status page, which only reads it. */
function fakeFill(digest: string, received: number, size: number | undefined): Fill {
  return { digest: { value: digest }, received, size, state: 'running' } as unknown as Fill;
}

describe('Ring', () => {
  it('keeps the last N items, oldest first', () => {
    const ring = new Ring<number>(3);
    expect(ring.toArray()).toEqual([]);
    for (let i = 1; i <= 5; i++) ring.push(i);
    expect(ring.toArray()).toEqual([3, 4, 5]);
    expect(ring.size).toBe(3);
    expect(() => new Ring(0)).toThrow(RangeError);
  });
});

describe('series sampling', () => {
  it('hands out what happened in each interval, keeps only `points` of them, and reads a reset counter as a quiet interval', async () => {
    const values = { hits: 0, misses: 0, cacheBytes: 0, upstreamBytes: 0 };
    let t = 1000;
    // An interval the timer never reaches in this test: the test takes the samples itself.
    const sampler = createSampler({ read: async () => ({ ...values }), intervalMs: 3_600_000, points: 3, now: () => t });
    try {
      await sampler.sample(); // the baseline (the one taken at creation may still be in flight; this joins it)
      expect(sampler.series()).toEqual([]);

      const step = async (change: Partial<typeof values>) => {
        Object.assign(values, change);
        t += 1000;
        await sampler.sample();
      };
      await step({ hits: 3, misses: 1, cacheBytes: 300, upstreamBytes: 100 });
      await step({}); // nothing asked: no ratio, not a ratio of 0
      await step({ hits: 4, misses: 2, cacheBytes: 400, upstreamBytes: 150 });
      expect(sampler.series()).toEqual([
        { t: 2000, hits: 3, misses: 1, hitRatio: 0.75, cacheBytes: 300, upstreamBytes: 100 },
        { t: 3000, hits: 0, misses: 0, hitRatio: null, cacheBytes: 0, upstreamBytes: 0 },
        { t: 4000, hits: 1, misses: 1, hitRatio: 0.5, cacheBytes: 100, upstreamBytes: 50 },
      ]);

      await step({ hits: 0, misses: 0, cacheBytes: 0, upstreamBytes: 0 });
      const series = sampler.series();
      expect(series).toHaveLength(3);
      expect(series.map((p) => p.t)).toEqual([3000, 4000, 5000]);
      expect(series[2]).toEqual({ t: 5000, hits: 0, misses: 0, hitRatio: null, cacheBytes: 0, upstreamBytes: 0 });
    } finally {
      sampler.stop();
    }
  });

  it('samples on its timer', async () => {
    let reads = 0;
    const sampler = createSampler({ read: async () => ({ hits: reads++, misses: 0, cacheBytes: 0, upstreamBytes: 0 }), intervalMs: 20, points: 10 });
    try {
      const deadline = Date.now() + 5000;
      while (sampler.series().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(sampler.series().length).toBeGreaterThanOrEqual(3);
    } finally {
      sampler.stop();
    }
    const after = reads;
    await new Promise((r) => setTimeout(r, 80));
    expect(reads).toBe(after);
  });
});

describe('most pulled repositories', () => {
  it('tracks at most maxRepositories by name and counts the rest as (other)', () => {
    const pulls = createPullCounter(2);
    for (const name of ['a', 'b', 'a', 'c', 'd', 'd', 'a', 'b']) pulls.count(name);
    expect(pulls.tracked).toBe(2);
    expect(pulls.top(10)).toEqual([
      { repository: '(other)', pulls: 3 },
      { repository: 'a', pulls: 3 },
      { repository: 'b', pulls: 2 },
    ]);
    expect(pulls.top(1)).toEqual([{ repository: '(other)', pulls: 3 }]);
  });
});

describe('largest repositories', () => {
  it('counts an image once per repository however many tags name it', () => {
    const rows = aggregate([
      image(PUBLIC, 'team/app', '1.0', 'sha256:1', 100),
      image(PUBLIC, 'team/app', 'latest', 'sha256:1', 100),
      image(PUBLIC, 'team/app', '0.9', 'sha256:2', 50),
      image(PUBLIC, 'team/small', '1.0', 'sha256:3', 10),
    ]);
    expect(rows).toEqual([
      { repository: `${PUBLIC}/team/app`, bytes: 150, tags: 3 },
      { repository: `${PUBLIC}/team/small`, bytes: 10, tags: 1 },
    ]);
  });

  it('gives each viewer its own top rows: those it may see, up to the limit', async () => {
    const largest = createLargest({
      list: async () => [image(PUBLIC, 'a', '1', 'sha256:1', 300), image(PUBLIC, 'b', '1', 'sha256:2', 200), image(PUBLIC, 'c', '1', 'sha256:3', 100)],
      ttlMs: 60_000,
      limit: 2,
    });
    largest.current();
    await largest.settled();
    const names = (visible?: (r: string) => boolean) => largest.current(visible).repositories.map((r) => r.repository);
    expect(names()).toEqual([`${PUBLIC}/a`, `${PUBLIC}/b`]);
    expect(names((r) => r !== `${PUBLIC}/a`)).toEqual([`${PUBLIC}/b`, `${PUBLIC}/c`]);
    expect(names(() => false)).toEqual([]);
  });

  it('reads storage at most once at a time, reuses the answer for ttlMs, and never waits for it', async () => {
    let t = 0;
    let calls = 0;
    let release!: () => void;
    const list = async () => {
      calls++;
      await new Promise<void>((r) => (release = r));
      return [image(PUBLIC, 'team/app', '1.0', 'sha256:1', 100)];
    };
    const largest = createLargest({ list, ttlMs: 60_000, limit: 10, now: () => t });
    expect(largest.current()).toEqual({ repositories: [], computedAt: null, pending: true });
    expect(largest.current().pending).toBe(true);
    expect(calls).toBe(1);
    release();
    await largest.settled();
    expect(largest.current()).toEqual({ repositories: [{ repository: `${PUBLIC}/team/app`, bytes: 100, tags: 1 }], computedAt: 0, pending: false });
    t = 59_999;
    largest.current();
    expect(calls).toBe(1);
    t = 60_000;
    const stale = largest.current();
    expect(stale).toMatchObject({ pending: true, computedAt: 0 });
    expect(stale.repositories).toHaveLength(1);
    expect(calls).toBe(2);
    release();
    await largest.settled();
  });

  it('keeps the last answer and says why when storage cannot be read', async () => {
    let fail = false;
    let t = 0;
    const largest = createLargest({
      list: async () => {
        if (fail) throw Object.assign(new Error('/secret/path: permission denied'), { code: 'EACCES' });
        return [image(PUBLIC, 'team/app', '1.0', 'sha256:1', 100)];
      },
      ttlMs: 10,
      limit: 10,
      now: () => t,
    });
    largest.current();
    await largest.settled();
    fail = true;
    t = 10;
    largest.current();
    await largest.settled();
    const report = largest.current();
    expect(report.error).toBe('EACCES');
    expect(report.repositories).toHaveLength(1);
    expect(JSON.stringify(report)).not.toContain('/secret/path');
    await largest.settled();
  });
});

describe('fills in flight', () => {
  it('shows progress, the repository of the request that started it and the clients reading it, then forgets it', () => {
    const events = new MirrorEvents();
    const list: Fill[] = [];
    let t = 0;
    const tracker = trackFills(events, { list: () => list }, (u) => u !== SECRET, () => t);
    const blob = (over: Partial<CacheEvent>) => cacheEvent({ kind: 'blob', digest: 'sha256:b1', ...over });
    const served = (over: Partial<CacheEvent>) => ({ ...blob(over), status: 200, bytes: 0, complete: false, durationMs: 1 });

    events.emit('fill:start', { digest: 'sha256:b1' });
    list.push(fakeFill('sha256:b1', 250, 1000));
    events.emit('cache', blob({ result: 'MISS' }));
    events.emit('cache', blob({ result: 'JOIN', repository: 'team/other' }));
    events.emit('cache', blob({ result: 'JOIN', method: 'HEAD' })); // a HEAD reads nothing
    t = 2000;
    expect(tracker.snapshot(10)).toEqual({
      fills: [{ digest: 'sha256:b1', repository: `${PUBLIC}/team/app`, state: 'running', received: 250, size: 1000, percent: 25, rate: 125, clients: 2, startedAt: 0 }],
      hidden: 0,
    });
    events.emit('served', served({ result: 'JOIN' }));
    expect(tracker.snapshot(10).fills[0]!.clients).toBe(1);

    // The viewer sees it by a repository it may pull, whichever request that was.
    expect(tracker.snapshot(10, (r) => r === `${PUBLIC}/team/other`).fills.map((f) => f.repository)).toEqual([`${PUBLIC}/team/other`]);
    expect(tracker.snapshot(10, () => false)).toEqual({ fills: [], hidden: 1 });

    events.emit('fill:end', { digest: 'sha256:b1', outcome: 'committed', bytes: 1000, source: 'upstream', durationMs: 5 });
    list.shift();
    expect(tracker.snapshot(10)).toEqual({ fills: [], hidden: 0 });
    tracker.stop();
  });

  it('counts, and names nothing of, fills of private upstreams and fills no client asked for', () => {
    const events = new MirrorEvents();
    const list: Fill[] = [];
    const tracker = trackFills(events, { list: () => list }, (u) => u !== SECRET, () => 0);
    const blob = (digest: string, over: Partial<CacheEvent> = {}) => cacheEvent({ kind: 'blob', digest, ...over });

    events.emit('fill:start', { digest: 'sha256:b2' });
    list.push(fakeFill('sha256:b2', 10, 777_777));
    events.emit('cache', blob('sha256:b2', { upstream: SECRET, repository: 'acme/payroll' }));
    // A warm-up: no request tells whose it is.
    events.emit('fill:start', { digest: 'sha256:b3' });
    list.push(fakeFill('sha256:b3', 0, 10));
    // Started before the tracker heard of it.
    list.push(fakeFill('sha256:b4', 0, 10));
    const report = tracker.snapshot(10);
    expect(report).toEqual({ fills: [], hidden: 3 });

    // An open repository's client joins the private fill: the digest is that repository's to pull now.
    events.emit('cache', blob('sha256:b2', { result: 'JOIN', repository: 'team/base' }));
    expect(tracker.snapshot(10).fills.map((f) => [f.digest, f.repository, f.clients])).toEqual([['sha256:b2', `${PUBLIC}/team/base`, 2]]);
    expect(JSON.stringify(tracker.snapshot(10))).not.toContain('payroll');
    tracker.stop();
  });
});

describe('createStatus', () => {
  function source(events: MirrorEvents, fills: Fill[] = [], auth?: StatusSource['config']['auth']): StatusSource {
    return {
      events,
      fills: { list: () => fills, size: fills.length } as StatusSource['fills'],
      upstreams: [
        {
          name: PUBLIC,
          url: 'http://127.0.0.1:1',
          request: () => Promise.reject(new Error('not used')),
          close: async () => {},
          health: () => [
            { url: 'http://u:p@127.0.0.1:1', state: 'up', failures: 0 },
            { url: 'http://127.0.0.1:2', state: 'down', failures: 3, retryAt: 1 },
          ],
        } as StatusSource['upstreams'][number],
        { name: SECRET, url: 'http://127.0.0.1:3', request: () => Promise.reject(new Error('not used')), close: async () => {} },
      ],
      storage: {} as Storage,
      config: {
        upstreams: [{ name: PUBLIC, private: false, forwardCredentials: false }, { name: SECRET, private: false, forwardCredentials: true }],
        cache: { maxManifestBytes: 1 << 20 },
        auth,
      },
    };
  }

  it('takes its figures from the metrics registry, health from the upstreams, and shows nothing of a private upstream but counts', async () => {
    const events = new MirrorEvents();
    const mirror = source(events, []);
    const metrics = createMetrics({ events, fills: { size: 0 } });
    const status = createStatus(mirror, metrics, {
      sampleInterval: 3_600_000,
      maxRepositories: 10,
      listImages: async () => [image(PUBLIC, 'team/app', '1.0', 'sha256:1', 100), image(SECRET, 'acme/payroll', '1.0', 'sha256:9', 900)],
    });
    try {
      const pull = (upstream: string, repository: string, result: CacheEvent['result'], bytes: number) => {
        const e = cacheEvent({ upstream, repository, result, size: bytes });
        events.emit('cache', e);
        events.emit('served', { ...e, status: 200, bytes, complete: true, durationMs: 1 });
      };
      pull(PUBLIC, 'team/app', 'MISS', 10);
      pull(PUBLIC, 'team/app', 'HIT', 10);
      pull(PUBLIC, 'team/app', 'HIT', 10);
      pull(SECRET, 'acme/payroll', 'MISS', 20);
      pull(SECRET, 'acme/hr', 'HIT', 20);
      events.emit('upstream', { upstream: PUBLIC, method: 'GET', repository: 'team/app', status: 200, durationMs: 1 });
      events.emit('upstream', { upstream: PUBLIC, method: 'GET', repository: 'team/app', status: 503, durationMs: 1 });
      events.emit('upstream', { upstream: SECRET, method: 'GET', repository: 'acme/payroll', error: 'connection refused', durationMs: 1 });

      const first = await status.snapshot();
      const figures = await readFigures(metrics.registry);
      expect(first.totals).toEqual({
        hits: 3,
        misses: 2,
        hitRatio: 0.6,
        results: { HIT: 3, MISS: 2, JOIN: 0, REVALIDATED: 0, STALE: 0 },
        cacheBytes: 40,
        upstreamBytes: 30,
        fillsInFlight: 0,
        storageBytes: null,
      });
      expect(figures.hits).toBe(3);
      expect(first.pulled).toEqual([{ repository: `${PUBLIC}/team/app`, pulls: 3 }]);
      expect(first.upstreams).toEqual([
        {
          name: PUBLIC,
          state: 'degraded',
          urls: [
            { url: 'http://127.0.0.1:1', state: 'up', failures: 0 },
            { url: 'http://127.0.0.1:2', state: 'down', failures: 3, retryAt: 1 },
          ],
          requests: 2,
          errors: 1,
        },
        { name: SECRET, state: 'unknown', requests: 1, errors: 1 },
      ]);

      await new Promise((r) => setTimeout(r, 10));
      const later = await status.snapshot();
      expect(later.largest.repositories).toEqual([{ repository: `${PUBLIC}/team/app`, bytes: 100, tags: 1 }]);
      const text = JSON.stringify(later);
      expect(text).not.toContain(SECRET + '/');
      expect(text).not.toContain('900');
      expect(text).not.toContain('payroll');
      expect(text).not.toContain('acme/hr');
      expect(text).not.toContain('u:p@');
    } finally {
      status.close();
      metrics.stop();
    }
    // Closed: it no longer counts.
    events.emit('cache', cacheEvent({ repository: 'team/after' }));
    expect(JSON.stringify((await status.snapshot()).pulled)).not.toContain('team/after');
  });

  it('on a protected mirror gives each viewer only the fills, repositories and pulls the pull rules let it pull', async () => {
    const events = new MirrorEvents();
    const list: Fill[] = [];
    const mirror = source(events, list, {
      htpasswd: '/etc/htpasswd',
      tokens: [],
      anonymous: [`${PUBLIC}/library/open`],
      rules: [
        { users: ['x'], repositories: [`${PUBLIC}/library/small`] },
        { users: ['y'], repositories: [`${PUBLIC}/library/medium`] },
      ],
    });
    const metrics = createMetrics({ events, fills: { size: 0 } });
    const status = createStatus(mirror, metrics, {
      sampleInterval: 3_600_000,
      listImages: async () => ['small', 'medium', 'open'].map((r, i) => image(PUBLIC, `library/${r}`, '1', `sha256:${i}`, 100 * (i + 1))),
    });
    try {
      for (const [repository, digest] of [['library/small', 'sha256:f1'], ['library/medium', 'sha256:f2'], ['library/open', 'sha256:f3']] as const) {
        events.emit('cache', cacheEvent({ repository }));
        events.emit('fill:start', { digest });
        list.push(fakeFill(digest, 1, 2));
        events.emit('cache', cacheEvent({ kind: 'blob', repository, digest }));
      }
      await status.snapshot();
      await new Promise((r) => setTimeout(r, 10));
      const seen = async (client?: string) => {
        const s = await status.snapshot(client);
        return { fills: s.fills.map((f) => f.digest), hiddenFills: s.hiddenFills, largest: s.largest.repositories.map((r) => r.repository), pulled: s.pulled.map((r) => r.repository) };
      };
      expect(await seen('x')).toEqual({ fills: ['sha256:f1'], hiddenFills: 2, largest: [`${PUBLIC}/library/small`], pulled: [`${PUBLIC}/library/small`] });
      expect(await seen('y')).toEqual({ fills: ['sha256:f2'], hiddenFills: 2, largest: [`${PUBLIC}/library/medium`], pulled: [`${PUBLIC}/library/medium`] });
      expect(await seen(undefined)).toEqual({ fills: ['sha256:f3'], hiddenFills: 2, largest: [`${PUBLIC}/library/open`], pulled: [`${PUBLIC}/library/open`] });
      expect(await seen('nobody')).toEqual({ fills: [], hiddenFills: 3, largest: [], pulled: [] });
    } finally {
      status.close();
      metrics.stop();
    }
  });
});
