/**
 * What the status page shows, collected for one mirror: figures from its metrics registry,
 * their history, upstream health as `/readyz` reports it, fills in flight, and the largest and
 * most pulled repositories, each as far as its viewer may see them (privacy.ts). The page
 * (`middleware/status-page`) only renders `snapshot(client)`.
 */
import type { Registry } from 'prom-client';
import { listCached, type CachedImage } from '../admin/index.js';
import type { MirrorEvents } from '../events/index.js';
import type { Fill } from '../fill/index.js';
import { summarize, type UpstreamHealthSummary } from '../health/readiness.js';
import type { Storage } from '../storage.js';
import type { RateLimitSnapshot } from '../upstream/rate-limit.js';
import type { Upstream } from '../upstream/types.js';
import { hitRatio, readFigures } from './figures.js';
import { trackFills, type FillStatus } from './fills.js';
import { createLargest, type LargestReport } from './largest.js';
import { privateUpstreams, viewers, type AuthSettings } from './privacy.js';
import { createPullCounter } from './pulls.js';
import { createSampler, type SeriesPoint } from './series.js';

export { Ring } from './ring.js';
export { readFigures, hitRatio, METRIC, type Figures } from './figures.js';
export { createSampler, type Sample, type Sampler, type SamplerOptions, type SeriesPoint } from './series.js';
export { createPullCounter, OTHER, type PullCounter } from './pulls.js';
export { trackFills, type FillStatus, type FillsReport, type FillTracker } from './fills.js';
export { aggregate, createLargest, type Largest, type LargestOptions, type LargestReport, type RepositorySize } from './largest.js';
export { privateUpstreams, viewers, type AuthSettings, type Visible } from './privacy.js';

/** The parts of a mirror the status reads; a `Mirror` has all of them. */
export interface StatusSource {
  readonly events: MirrorEvents;
  readonly fills: { list(): Fill[] };
  readonly upstreams: readonly Upstream[];
  readonly storage: Storage;
  readonly config: {
    readonly upstreams: ReadonlyArray<{ name: string; private?: boolean; forwardCredentials?: boolean }>;
    readonly cache: { readonly maxManifestBytes: number };
    /** The mirror's own logins and pull rules; absent, the mirror is not protected. */
    readonly auth?: AuthSettings;
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
  /** Fills listed (`totals.fillsInFlight` counts them all). Default 50. */
  maxFills?: number;
  /** How long the largest repositories are reused before storage is read again, ms. Default 60 s. */
  largestTtl?: number;
  /** Upstreams of which the page shows nothing by name. Default: those `private` or `forwardCredentials` in the config. */
  privateUpstreams?: Iterable<string>;
  /** What is cached; default `listCached` over the mirror's storage. */
  listImages?: () => Promise<CachedImage[]>;
  /** Told when sampling the registry fails. */
  onError?: (err: unknown) => void;
}

export interface UpstreamStatus extends UpstreamHealthSummary {
  requests: number;
  errors: number;
  /** Present once the upstream has sent rate-limit headers or a 429 holds it off. */
  rateLimit?: RateLimitSnapshot;
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
  /** Fills in flight the viewer is not shown (see FillsReport.hidden). */
  hiddenFills: number;
  largest: LargestReport;
  pulled: Array<{ repository: string; pulls: number }>;
}

export interface Status {
  /**
   * What `client` may see: a user's or token's name as the mirror verified it, undefined for
   * an anonymous viewer. On a mirror that is not protected every viewer sees the same.
   */
  snapshot(client?: string): Promise<StatusSnapshot>;
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
  const privateNames = new Set(options.privateUpstreams ?? privateUpstreams(mirror.config.upstreams));
  const open = (upstream: string) => !privateNames.has(upstream);
  const visibleTo = viewers(mirror.config.auth);
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
    if (e.kind === 'manifest' && e.method === 'GET' && open(e.upstream)) pulls.count(`${e.upstream}/${e.repository}`);
  });
  const fills = trackFills(mirror.events, mirror.fills, open);
  const listImages = options.listImages ?? (() => listCached({ storage: mirror.storage, maxManifestBytes: mirror.config.cache.maxManifestBytes }));
  const largest = createLargest({
    list: async () => (await listImages()).filter((image) => open(image.upstream)),
    ttlMs: largestTtl,
    limit: top,
  });

  return {
    async snapshot(client) {
      const visible = visibleTo?.(client);
      const f = await readFigures(registry);
      const inFlight = fills.snapshot(maxFills, visible);
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
        upstreams: mirror.upstreams.map((u) => ({
          ...summarize(u),
          ...(f.upstreams.get(u.name) ?? { requests: 0, errors: 0 }),
          ...rateLimitOf(u),
        })),
        fills: inFlight.fills,
        hiddenFills: inFlight.hidden,
        largest: largest.current(visible),
        pulled: pulls.top(top, visible),
      };
    },
    close() {
      sampler.stop();
      offPulls();
      fills.stop();
    },
  };
}

/** Nothing for an upstream that never spoke of limits, so that its entry reads as before. */
function rateLimitOf(upstream: Upstream): { rateLimit?: RateLimitSnapshot } {
  const snapshot = upstream.rateLimit?.();
  if (!snapshot || (snapshot.limit === undefined && snapshot.remaining === undefined && snapshot.backoffSeconds === 0)) return {};
  return { rateLimit: snapshot };
}
