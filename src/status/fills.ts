/**
 * Fills in flight with their progress. A Fill knows its bytes but not who asked for it: the
 * repositories and the clients come from the `cache` events of the requests that started or
 * joined it, and are forgotten when the fill ends.
 */
import type { CacheEvent, MirrorEvents } from '../events/index.js';
import type { Fill, FillState } from '../fill/index.js';
import type { Visible } from './privacy.js';

export interface FillStatus {
  digest: string;
  /**
   * `<upstream>/<repository>` of a request reading it that the viewer may pull: the one that
   * started it when the viewer may pull that.
   */
  repository: string;
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

export interface FillsReport {
  /** The first `limit` fills the viewer may see, oldest first. */
  fills: FillStatus[];
  /**
   * Fills in flight left out for this viewer: those read only from private upstreams or from
   * repositories it may not pull, and those no client asked for (a warm-up, a prefetch), whose
   * repository nothing tells.
   */
  hidden: number;
}

export interface FillTracker {
  /** `visible` absent: every fill read from an open upstream. */
  snapshot(limit: number, visible?: Visible): FillsReport;
  stop(): void;
}

interface Known {
  startedAt: number;
  /** Of open upstreams only, in the order they first read the fill. */
  repositories: string[];
  clients: number;
}

const FILL_RESULTS: ReadonlySet<string> = new Set(['MISS', 'JOIN']);
/** Any client can join a fill under any name; past this many, more names are not kept. */
const MAX_REPOSITORIES = 16;

export function trackFills(
  events: MirrorEvents,
  fills: { list(): Fill[] },
  /** Whether an upstream's repository names may be kept at all (see privacy.ts). */
  open: (upstream: string) => boolean,
  now: () => number = Date.now,
): FillTracker {
  const known = new Map<string, Known>();
  const reading = (e: CacheEvent) => e.kind === 'blob' && FILL_RESULTS.has(e.result) && e.method === 'GET';
  const off = [
    events.on('fill:start', (e) => {
      known.set(e.digest, { startedAt: now(), repositories: [], clients: 0 });
    }),
    events.on('cache', (e) => {
      const k = reading(e) ? known.get(e.digest) : undefined;
      if (!k) return;
      k.clients++;
      const repository = `${e.upstream}/${e.repository}`;
      if (open(e.upstream) && k.repositories.length < MAX_REPOSITORIES && !k.repositories.includes(repository)) k.repositories.push(repository);
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
    snapshot(limit, visible = () => true) {
      const at = now();
      const shown: FillStatus[] = [];
      let hidden = 0;
      for (const fill of fills.list()) {
        const digest = fill.digest.value;
        const k = known.get(digest);
        const repository = k?.repositories.find(visible);
        if (!k || repository === undefined) {
          hidden++;
          continue;
        }
        const size = fill.size ?? null;
        const elapsed = (at - k.startedAt) / 1000;
        shown.push({
          digest,
          repository,
          state: fill.state,
          received: fill.received,
          size,
          percent: size ? Math.min(100, (fill.received / size) * 100) : null,
          rate: elapsed > 0 ? fill.received / elapsed : 0,
          clients: k.clients,
          startedAt: k.startedAt,
        });
      }
      shown.sort((a, b) => a.startedAt - b.startedAt || a.digest.localeCompare(b.digest));
      return { fills: shown.slice(0, limit), hidden };
    },
    stop() {
      for (const unsubscribe of off.splice(0)) unsubscribe();
    },
  };
}
