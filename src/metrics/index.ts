/**
 * Prometheus metrics for one mirror, fed by its events. Each call builds its own Registry
 * unless one is given, so two mirrors in one process never count into each other (prom-client's
 * global registry would mix them, and would refuse the second mirror's metric names).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheResult, MirrorEvents } from '../events/index.js';
import type { Fills } from '../fill/index.js';
import type { RateLimitSnapshot } from '../upstream/rate-limit.js';
import type { Upstream } from '../upstream/types.js';
import { Tally } from './tally.js';

/** What eviction knows about the store's contents. */
export interface StorageStats {
  bytes: number;
  objects: number;
}

/** The parts of a mirror that metrics read; a `Mirror` has all of them. */
export interface MetricsSource {
  readonly events: MirrorEvents;
  readonly fills: Pick<Fills, 'size'>;
  /** Present when eviction tracks the store (only then is its size known without a scan). */
  readonly eviction?: { stats(): StorageStats } | undefined;
  /** Upstreams whose rate limits are shown (those that track them: `rateLimit()`). */
  readonly upstreams?: ReadonlyArray<Pick<Upstream, 'name' | 'rateLimit'>>;
}

export interface MetricsOptions {
  /** Where to register; a fresh Registry by default. Register one mirror per registry. */
  registry?: Registry;
  /** Also collect prom-client's process metrics (CPU, memory, event loop lag). */
  processMetrics?: boolean;
}

export interface Metrics {
  readonly registry: Registry;
  /** The exposition text; serve it with `contentType`. */
  text(): Promise<string>;
  readonly contentType: string;
  /** Stops listening to the mirror; the registry keeps the last values. */
  stop(): void;
}

/** Responses whose bytes came from storage rather than from an upstream fetch. */
const FROM_CACHE: ReadonlySet<CacheResult> = new Set(['HIT', 'REVALIDATED', 'STALE']);

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

// Long on purpose: one declaration per metric, written out, so that the name the README, the
// dashboards and a grep look for stands in one place beside its help text and labels.
export function createMetrics(mirror: MetricsSource, options: MetricsOptions = {}): Metrics {
  const registry = options.registry ?? new Registry();
  const registers = [registry];
  if (options.processMetrics) collectDefaultMetrics({ register: registry });

  // The counters every request moves are tallied and handed over when read (see tally.ts).
  const requestTally = new Tally(['route', 'method', 'status']);
  new Counter({
    name: 'oci_mirror_requests_total',
    help: 'Requests to /v2/, by route kind, method and response status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers,
    collect() {
      requestTally.drain((labels, n) => this.inc(labels, n));
    },
  });
  const requestDuration = new Histogram({
    name: 'oci_mirror_request_duration_seconds',
    help: 'Time from request to the end of the response, by route kind.',
    labelNames: ['route'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const cacheTally = new Tally(['kind', 'result']);
  new Counter({
    name: 'oci_mirror_cache_requests_total',
    help: 'Manifest, blob, tag list (tags) and referrers requests by cache outcome: HIT, MISS, JOIN (joined a fill in flight), REVALIDATED, STALE.',
    labelNames: ['kind', 'result'] as const,
    registers,
    collect() {
      cacheTally.drain((labels, n) => this.inc(labels, n));
    },
  });
  const servedTally = new Tally(['kind', 'source']);
  new Counter({
    name: 'oci_mirror_served_bytes_total',
    help: 'Body bytes of completed manifest and blob responses, by kind and source (cache: from storage; upstream: from a fetch).',
    labelNames: ['kind', 'source'] as const,
    registers,
    collect() {
      servedTally.drain((labels, n) => this.inc(labels, n));
    },
  });
  const fetched = new Counter({
    name: 'oci_mirror_upstream_fetched_bytes_total',
    help: 'Manifest and blob bytes received from upstreams.',
    labelNames: ['kind'] as const,
    registers,
  });
  const upstreamRequests = new Counter({
    name: 'oci_mirror_upstream_requests_total',
    help: 'Requests to upstreams, by upstream, method and status ("error" when no answer came).',
    labelNames: ['upstream', 'method', 'status'] as const,
    registers,
  });
  const upstreamErrors = new Counter({
    name: 'oci_mirror_upstream_errors_total',
    help: 'Upstream requests that got no answer or a 5xx, by upstream and reason.',
    labelNames: ['upstream', 'reason'] as const,
    registers,
  });
  const upstreamDuration = new Histogram({
    name: 'oci_mirror_upstream_request_duration_seconds',
    help: 'Time from an upstream request to its response headers (or its failure).',
    labelNames: ['upstream', 'method'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  new Gauge({
    name: 'oci_mirror_fills_in_flight',
    help: 'Blob fills from upstreams in progress.',
    registers,
    collect() {
      this.set(mirror.fills.size);
    },
  });
  const fills = new Counter({
    name: 'oci_mirror_fills_total',
    help: 'Blob fills that ended, by outcome (committed, existing: already stored, failed) and source (upstream, or replica: streamed from another replica\'s fill).',
    labelNames: ['outcome', 'source'] as const,
    registers,
  });
  const refused = new Counter({
    name: 'oci_mirror_fills_refused_total',
    help: 'Blob fills a limit stopped, by reason (too_large: over fill.maxBlobBytes; no_space: the spool\'s file system has no room above fill.reserveBytes). Each also counts as a failed fill.',
    labelNames: ['reason'] as const,
    registers,
  });
  const relayed = new Counter({
    name: 'oci_mirror_relayed_bytes_total',
    help: 'Blob bytes streamed from another replica\'s fill in flight instead of from an upstream.',
    registers,
  });
  const fillDuration = new Histogram({
    name: 'oci_mirror_fill_duration_seconds',
    help: 'Duration of blob fills, by outcome.',
    labelNames: ['outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const evictions = new Counter({
    name: 'oci_mirror_evictions_total',
    help: 'Objects removed from storage by eviction, by kind and reason (ttl: unused too long; size: over the size limit; purge: removed by an operator).',
    labelNames: ['kind', 'reason'] as const,
    registers,
  });
  const evictedBytes = new Counter({
    name: 'oci_mirror_evicted_bytes_total',
    help: 'Bytes removed from storage by eviction.',
    labelNames: ['kind'] as const,
    registers,
  });
  // Only where eviction tracks the store: without it the size would cost a full scan, and a
  // gauge that is never set would read 0, which is a lie rather than an absence.
  const tracked = mirror.eviction;
  if (tracked) {
    new Gauge({
      name: 'oci_mirror_storage_bytes',
      help: 'Bytes of manifests and blobs in storage, as eviction tracks them.',
      registers,
      collect() {
        this.set(tracked.stats().bytes);
      },
    });
    new Gauge({
      name: 'oci_mirror_storage_objects',
      help: 'Manifests and blobs in storage, as eviction tracks them.',
      registers,
      collect() {
        this.set(tracked.stats().objects);
      },
    });
  }

  rateLimitGauges(mirror.upstreams ?? [], registers);
  const backoffs = new Counter({
    name: 'oci_mirror_upstream_ratelimit_backoffs_total',
    help: 'Back-offs started by a 429 from an upstream (during one, the upstream gets no requests).',
    labelNames: ['upstream'] as const,
    registers,
  });

  const { events } = mirror;
  const unsubscribe = [
    events.on('request', (e) => {
      requestTally.add(1, e.route, e.method, String(e.status));
      requestDuration.observe({ route: e.route }, e.durationMs / 1000);
    }),
    events.on('cache', (e) => {
      cacheTally.add(1, e.kind, e.result);
      // A manifest miss is one fetch of its bytes (blobs are counted by their fills).
      if (e.kind === 'manifest' && e.result === 'MISS' && e.size) fetched.inc({ kind: 'manifest' }, e.size);
    }),
    events.on('list', (e) => {
      cacheTally.add(1, e.kind, e.result);
    }),
    events.on('served', (e) => {
      if (e.bytes > 0) servedTally.add(e.bytes, e.kind, FROM_CACHE.has(e.result) ? 'cache' : 'upstream');
    }),
    events.on('upstream', (e) => {
      upstreamRequests.inc({ upstream: e.upstream, method: e.method, status: e.status === undefined ? 'error' : String(e.status) });
      upstreamDuration.observe({ upstream: e.upstream, method: e.method }, e.durationMs / 1000);
      if (e.error !== undefined) upstreamErrors.inc({ upstream: e.upstream, reason: e.error });
      else if (e.status !== undefined && e.status >= 500) upstreamErrors.inc({ upstream: e.upstream, reason: `http ${e.status}` });
    }),
    events.on('fill:end', (e) => {
      fills.inc({ outcome: e.outcome, source: e.source });
      fillDuration.observe({ outcome: e.outcome }, e.durationMs / 1000);
      if (e.refused) refused.inc({ reason: e.refused.reason });
      // Bytes another replica fetched are its upstream traffic, not this one's.
      if (e.bytes > 0 && e.source === 'replica') relayed.inc(e.bytes);
      else if (e.bytes > 0) fetched.inc({ kind: 'blob' }, e.bytes);
    }),
    events.on('upstream:backoff', (e) => backoffs.inc({ upstream: e.upstream })),
    events.on('eviction', (e) => {
      evictions.inc({ kind: e.kind, reason: e.reason });
      evictedBytes.inc({ kind: e.kind }, e.bytes);
    }),
  ];

  return {
    registry,
    text: () => registry.metrics(),
    get contentType() {
      return registry.contentType;
    },
    stop() {
      for (const off of unsubscribe.splice(0)) off();
    },
  };
}

/**
 * What each upstream last said about its rate limit, read at scrape time. A figure it never sent
 * has no series (an absent limit is not a limit of 0); the back-off is 0 when there is none.
 */
function rateLimitGauges(upstreams: ReadonlyArray<Pick<Upstream, 'name' | 'rateLimit'>>, registers: Registry[]): void {
  const snapshots = () =>
    upstreams.flatMap((u) => {
      const snapshot = u.rateLimit?.();
      return snapshot ? [{ upstream: u.name, snapshot }] : [];
    });
  const figure = (name: string, help: string, pick: (s: RateLimitSnapshot) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['upstream'] as const,
      registers,
      collect() {
        this.reset();
        for (const { upstream, snapshot } of snapshots()) {
          const value = pick(snapshot);
          if (value !== undefined) this.set({ upstream }, value);
        }
      },
    });
  figure('oci_mirror_upstream_ratelimit_limit', 'Requests the upstream allows per window, from its last ratelimit-limit header.', (s) => s.limit);
  figure('oci_mirror_upstream_ratelimit_remaining', 'Requests left in the window, from the upstream\'s last ratelimit-remaining header.', (s) => s.remaining);
  figure('oci_mirror_upstream_ratelimit_window_seconds', 'The window the upstream\'s limit counts over (the ;w= of its headers).', (s) => s.window);
  figure('oci_mirror_upstream_ratelimit_backoff_seconds', 'Seconds until the upstream gets requests again after a 429; 0 when it gets them now.', (s) => s.backoffSeconds);
}
