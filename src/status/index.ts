/**
 * What the status page shows, collected for one mirror: figures from its metrics registry,
 * their history, upstream health as `/readyz` reports it, fills in flight, and the largest and
 * most pulled repositories. The page (`middleware/status`) only renders `snapshot()`.
 */
import type { Registry } from 'prom-client';
import { listCached, type CachedImage } from '../admin/index.js';
import type { MirrorEvents } from '../events/index.js';
import type { Fill } from '../fill/index.js';
import { summarize, type UpstreamHealthSummary } from '../health/readiness.js';
import type { Storage } from '../storage.js';
import type { Upstream } from '../upstream/types.js';
import { hitRatio, readFigures } from './figures.js';
import { trackFills, type FillStatus } from './fills.js';
import { createLargest, type LargestReport } from './largest.js';
import { privateUpstreams, repositoryLabel } from './privacy.js';
import { createPullCounter } from './pulls.js';
import { createSampler, type SeriesPoint } from './series.js';

export { Ring } from './ring.js';
export { readFigures, hitRatio, METRIC, type Figures } from './figures.js';
export { createSampler, type Sample, type Sampler, type SamplerOptions, type SeriesPoint } from './series.js';
export { createPullCounter, OTHER, type PullCounter } from './pulls.js';
export { trackFills, type FillStatus, type FillTracker } from './fills.js';
export { aggregate, createLargest, type Largest, type LargestOptions, type LargestReport, type RepositorySize } from './largest.js';
export { privateUpstreams, repositoryLabel, type RepositoryLabel } from './privacy.js';

/** The parts of a mirror the status reads; a `Mirror` has all of them. */
export interface StatusSource {
  readonly events: MirrorEvents;
  readonly fills: { list(): Fill[] };
  readonly upstreams: readonly Upstream[];
  readonly storage: Storage;
  readonly config: {
    readonly upstreams: ReadonlyArray<{ name: string; private?: boolean; forwardCredentials?: boolean }>;
    readonly cache: { readonly maxManifestBytes: number };
  };
}

export interface StatusOptions {
  /** How often the charts' counters are sampled, ms. Default 10 s. */
  sampleInterval?: number;
  /** Intervals the charts keep. Default 360 (an hour at 10 s). */
  points?: number;
  /** Repositories counted by name for "most pulled"; more go into `(other)`. Default 1000. */
  maxRepositories?: number;
  /** Rows in the largest and most pulled tables. Default 10. */
  top?: number;
  /** Fills listed (the count is always whole). Default 50. */
  maxFills?: number;
  /** How long the largest repositories are reused before storage is read again, ms. Default 60 s. */
  largestTtl?: number;
  /** Upstreams whose repository names the page must not show. Default: those `private` or `forwardCredentials` in the config. */
  privateUpstreams?: Iterable<string>;
  /** What is cached; default `listCached` over the mirror's storage. */
  listImages?: () => Promise<CachedImage[]>;
  /** Told when sampling the registry fails. */
  onError?: (err: unknown) => void;
}

export interface UpstreamStatus extends UpstreamHealthSummary {
  requests: number;
  errors: number;
}

export interface StatusSnapshot {
  /** ms since the epoch */
  now: number;
  startedAt: number;
  sampleInterval: number;
  totals: {
    hits: number;
    misses: number;
    hitRatio: number | null;
    results: Record<string, number>;
    cacheBytes: number;
    upstreamBytes: number;
    fillsInFlight: number;
    storageBytes: number | null;
  };
  series: SeriesPoint[];
  upstreams: UpstreamStatus[];
  fills: FillStatus[];
  largest: LargestReport;
  pulled: Array<{ repository: string; pulls: number }>;
}

export interface Status {
  snapshot(): Promise<StatusSnapshot>;
  /** Stops the sampler and the listeners; the last snapshot stays readable. */
  close(): void;
}

export function createStatus(mirror: StatusSource, metrics: { readonly registry: Registry }, options: StatusOptions = {}): Status {
  const {
    sampleInterval = 10_000,
    points = 360,
    maxRepositories = 1000,
    top = 10,
    maxFills = 50,
    largestTtl = 60_000,
    onError,
  } = options;
  const label = repositoryLabel(options.privateUpstreams ?? privateUpstreams(mirror.config.upstreams));
  const { registry } = metrics;
  const startedAt = Date.now();

  const sampler = createSampler({
    read: async () => {
      const f = await readFigures(registry);
      return { hits: f.hits, misses: f.misses, cacheBytes: f.cacheBytes, upstreamBytes: f.upstreamBytes };
    },
    intervalMs: sampleInterval,
    points,
    onError,
  });
  const pulls = createPullCounter(maxRepositories);
  const offPulls = mirror.events.on('cache', (e) => {
    if (e.kind === 'manifest' && e.method === 'GET') pulls.count(label(e.upstream, e.repository));
  });
  const fills = trackFills(mirror.events, mirror.fills, label);
  const largest = createLargest({
    list: options.listImages ?? (() => listCached({ storage: mirror.storage, maxManifestBytes: mirror.config.cache.maxManifestBytes })),
    label,
    ttlMs: largestTtl,
    limit: top,
  });

  return {
    async snapshot() {
      const f = await readFigures(registry);
      return {
        now: Date.now(),
        startedAt,
        sampleInterval,
        totals: {
          hits: f.hits,
          misses: f.misses,
          hitRatio: hitRatio(f.hits, f.misses),
          results: f.results,
          cacheBytes: f.cacheBytes,
          upstreamBytes: f.upstreamBytes,
          fillsInFlight: f.fillsInFlight,
          storageBytes: f.storageBytes ?? null,
        },
        series: sampler.series(),
        upstreams: mirror.upstreams.map((u) => ({ ...summarize(u), ...(f.upstreams.get(u.name) ?? { requests: 0, errors: 0 }) })),
        fills: fills.snapshot(maxFills),
        largest: largest.current(),
        pulled: pulls.top(top),
      };
    },
    close() {
      sampler.stop();
      offPulls();
      fills.stop();
    },
  };
}
