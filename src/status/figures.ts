/**
 * The page's figures, read from the mirror's own prom-client registry: the status page and
 * `/metrics` then agree by construction, with no second set of counters to drift apart.
 */
import type { Registry } from 'prom-client';
import type { CacheResult } from '../events/index.js';

export interface Figures {
  /** Requests answered from storage: HIT, REVALIDATED and STALE, as metrics counts bytes "from cache". */
  hits: number;
  /** Requests that needed the upstream: MISS, and JOIN (a fill already in flight). */
  misses: number;
  /** Every cache outcome, manifests and blobs together. */
  results: Record<CacheResult, number>;
  /** Body bytes served from storage: what the upstreams did not have to send again. */
  cacheBytes: number;
  /** Bytes received from upstreams (manifests and blobs). */
  upstreamBytes: number;
  fillsInFlight: number;
  /** Only where eviction tracks the store; otherwise unknown. */
  storageBytes: number | undefined;
  /** Requests and errors per upstream name. */
  upstreams: Map<string, { requests: number; errors: number }>;
}

export const METRIC = {
  cache: 'oci_mirror_cache_requests_total',
  served: 'oci_mirror_served_bytes_total',
  fetched: 'oci_mirror_upstream_fetched_bytes_total',
  fillsInFlight: 'oci_mirror_fills_in_flight',
  storageBytes: 'oci_mirror_storage_bytes',
  upstreamRequests: 'oci_mirror_upstream_requests_total',
  upstreamErrors: 'oci_mirror_upstream_errors_total',
} as const;

const HIT_RESULTS: ReadonlySet<string> = new Set<CacheResult>(['HIT', 'REVALIDATED', 'STALE']);
const MISS_RESULTS: ReadonlySet<string> = new Set<CacheResult>(['MISS', 'JOIN']);

type Sample = { labels: Partial<Record<string, string | number>>; value: number };

/** A metric's samples; none when the registry lacks it (a counter not yet created reads as 0, as in the exposition). */
async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  return (await metric.get()).values as Sample[];
}

function sum(values: Sample[], where: (labels: Sample['labels']) => boolean = () => true): number {
  return values.reduce((total, s) => (where(s.labels) ? total + s.value : total), 0);
}

export async function readFigures(registry: Registry): Promise<Figures> {
  const [counted, served, fetched, inFlight, storage, requests, errors] = await Promise.all([
    samples(registry, METRIC.cache),
    samples(registry, METRIC.served),
    samples(registry, METRIC.fetched),
    samples(registry, METRIC.fillsInFlight),
    samples(registry, METRIC.storageBytes),
    samples(registry, METRIC.upstreamRequests),
    samples(registry, METRIC.upstreamErrors),
  ]);
  // Manifests and blobs only: the page's hit ratio is about content, not tag lists.
  const cache = counted.filter((s) => s.labels.kind === 'manifest' || s.labels.kind === 'blob');
  const results: Record<CacheResult, number> = { HIT: 0, MISS: 0, JOIN: 0, REVALIDATED: 0, STALE: 0 };
  for (const s of cache) {
    const result = String(s.labels.result) as CacheResult;
    if (result in results) results[result] += s.value;
  }
  const upstreams = new Map<string, { requests: number; errors: number }>();
  const entry = (name: string) => upstreams.get(name) ?? upstreams.set(name, { requests: 0, errors: 0 }).get(name)!;
  for (const s of requests) entry(String(s.labels.upstream)).requests += s.value;
  for (const s of errors) entry(String(s.labels.upstream)).errors += s.value;
  return {
    hits: sum(cache, (l) => HIT_RESULTS.has(String(l.result))),
    misses: sum(cache, (l) => MISS_RESULTS.has(String(l.result))),
    results,
    cacheBytes: sum(served, (l) => l.source === 'cache'),
    upstreamBytes: sum(fetched),
    fillsInFlight: sum(inFlight),
    storageBytes: storage.length ? sum(storage) : undefined,
    upstreams,
  };
}

/** Hits over hits and misses; null when nothing was asked (no ratio is not a ratio of 0). */
export function hitRatio(hits: number, misses: number): number | null {
  return hits + misses === 0 ? null : hits / (hits + misses);
}
