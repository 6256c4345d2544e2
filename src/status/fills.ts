/**
 * Fills in flight with their progress. A Fill knows its bytes but not who asked for it: the
 * repository and the clients come from the `cache` events of the requests that started or
 * joined it, and are forgotten when the fill ends.
 */
import type { CacheEvent, MirrorEvents } from '../events/index.js';
import type { Fill, FillState } from '../fill/index.js';
import type { RepositoryLabel } from './privacy.js';

export interface FillStatus {
  digest: string;
  /** `<upstream>/<repository>` of the request that started it; null for a fill no client asked for (a warm-up). */
  repository: string | null;
  state: FillState;
  received: number;
  /** Declared size; null until the upstream answered, or when it sent none. */
  size: number | null;
  /** 0 to 100; null without a declared size. */
  percent: number | null;
  /** Bytes per second, averaged since the fill started. */
  rate: number;
  /** Requests reading this fill now. */
  clients: number;
  /** ms since the epoch */
  startedAt: number;
}

export interface FillTracker {
  snapshot(limit: number): FillStatus[];
  stop(): void;
}

interface Known {
  startedAt: number;
  repository: string | null;
  clients: number;
}

const FILL_RESULTS: ReadonlySet<string> = new Set(['MISS', 'JOIN']);

export function trackFills(
  events: MirrorEvents,
  fills: { list(): Fill[] },
  label: RepositoryLabel,
  now: () => number = Date.now,
): FillTracker {
  const known = new Map<string, Known>();
  const reading = (e: CacheEvent) => e.kind === 'blob' && FILL_RESULTS.has(e.result) && e.method === 'GET';
  const off = [
    events.on('fill:start', (e) => {
      known.set(e.digest, { startedAt: now(), repository: null, clients: 0 });
    }),
    events.on('cache', (e) => {
      const k = reading(e) ? known.get(e.digest) : undefined;
      if (!k) return;
      k.repository ??= label(e.upstream, e.repository);
      k.clients++;
    }),
    events.on('served', (e) => {
      const k = reading(e) ? known.get(e.digest) : undefined;
      if (k) k.clients = Math.max(0, k.clients - 1);
    }),
    events.on('fill:end', (e) => {
      known.delete(e.digest);
    }),
  ];

  return {
    snapshot(limit) {
      const at = now();
      return fills
        .list()
        .map((fill): FillStatus => {
          const digest = fill.digest.value;
          const k = known.get(digest);
          const startedAt = k?.startedAt ?? at;
          const size = fill.size ?? null;
          const elapsed = (at - startedAt) / 1000;
          return {
            digest,
            repository: k?.repository ?? null,
            state: fill.state,
            received: fill.received,
            size,
            percent: size ? Math.min(100, (fill.received / size) * 100) : null,
            rate: elapsed > 0 ? fill.received / elapsed : 0,
            clients: k?.clients ?? 0,
            startedAt,
          };
        })
        .sort((a, b) => a.startedAt - b.startedAt || a.digest.localeCompare(b.digest))
        .slice(0, limit);
    },
    stop() {
      for (const unsubscribe of off.splice(0)) unsubscribe();
    },
  };
}
