/**
 * Eviction in the background, the scheduler: it keeps the index of what the store holds
 * (store-index.ts) current from the mirror's events, and runs passes that remove what
 * `planEviction` picks, a bounded number per pass. At start-up one scan builds the index.
 *
 * Replicas over one store (`turns`) see each other's work only through that store: each pass
 * runs on one replica at a time and begins with a fresh scan, which learns what the others
 * stored, removed and last accessed. Their responses in progress are invisible, so content
 * whose shared access time is recent counts as in use: every replica rewrites the access time
 * of what it is serving at each flush, which keeps a long download recent for the others.
 */
import type { MirrorEvents } from '../events/index.js';
import type { Fills } from '../fill/index.js';
import type { Storage } from '../storage.js';
import { AccessLog } from './access.js';
import { trackPins } from './pins.js';
import { evictNow, type EvictionPass, type PassContext } from './pass.js';
import { PassScheduler } from './scheduler.js';
import { StoreIndex, type ScanResult } from './store-index.js';
import { DEFAULT_MAX_MANIFEST_BYTES } from '../manifests/keys.js';
import type { EvictionTurns } from './turns.js';

export type { EvictionPass } from './pass.js';


export interface EvictionOptions {
  storage: Storage;
  events: MirrorEvents;
  fills: Pick<Fills, 'get'>;
  /** Remove least recently used content while the store holds more than this many bytes. */
  maxBytes?: number;
  /** Remove content not accessed for this long, ms. */
  ttl?: number;
  /** Time between passes, ms. */
  interval: number;
  /** The most objects one pass removes. */
  batch: number;
  /** Time between writes of access times, ms (default: the interval, at most 30 s). */
  flushInterval?: number;
  /** Manifests larger than this are not read for references. */
  maxManifestBytes?: number;
  now?: () => number;
  /** The scan starts once this settles (the store's start-up recovery). */
  after?: Promise<unknown>;
  /** A pass or a flush failed; it is tried again later. */
  onError?: (err: unknown) => void;
  /** Replicas sharing the store: a pass runs only in this replica's turn. */
  turns?: EvictionTurns;
  /**
   * With `turns`: content accessed this recently, on any replica, is not removed, ms. The
   * default, three flush intervals, outlasts the time another replica's hit takes to reach the
   * shared store (one interval, plus a write that takes less than one).
   */
  recentMs?: number;
}

export interface Eviction {
  /** The start-up scan; passes wait for it. */
  readonly ready: Promise<ScanResult>;
  /** Runs a pass now, or joins the one in progress. */
  run(): Promise<EvictionPass>;
  /** What the store holds, as far as eviction knows. */
  stats(): { bytes: number; objects: number };
  /** Writes pending access times. */
  flush(): Promise<void>;
  /** Stops passes, waits for the one in progress and writes pending access times. */
  close(): Promise<void>;
}

export function createEviction(options: EvictionOptions): Eviction {
  const { storage, events, fills, maxBytes, ttl, interval, batch, maxManifestBytes = DEFAULT_MAX_MANIFEST_BYTES, now = Date.now, onError } = options;
  const flushInterval = options.flushInterval ?? Math.min(interval, 30_000);
  const { turns } = options;
  const recentMs = options.recentMs ?? 3 * flushInterval;
  /** Responses in progress, per digest: what is being served is never removed. */
  const pins = trackPins(events);
  const access = new AccessLog(storage.meta, now);
  const isPinned = (digest: string) => pins.isServed(digest) || fills.get(digest) !== undefined;
  const index = new StoreIndex({
    storage,
    access,
    maxManifestBytes,
    now,
    isPinned,
    onGrow: (bytes: number) => {
      if (maxBytes !== undefined && bytes > maxBytes) scheduler.schedule(Math.min(interval, 1000));
    },
  });
  const { nodes } = index;
  /** Being served or filled here, or (replicas) used recently enough that another replica may be serving it. */
  const inUse = (digest: string, at: number) => {
    if (isPinned(digest)) return true;
    if (!turns) return false;
    const node = nodes.get(digest);
    return node !== undefined && index.lastAccess(digest, node) > at - recentMs;
  };
  const passContext: PassContext = { index, storage, events, isPinned, inUse, now, ttl, maxBytes, batch };

  const unsubscribe = [...follow(events, index, access), () => pins.stop()];
  const scheduler = new PassScheduler(pass, interval, onError);

  async function pass(): Promise<EvictionPass> {
    // A scan that failed (storage down at start-up) is tried again rather than given up on.
    await ready.catch(() => (ready = index.scan()));
    await ready;
    if (!turns) return evictNow(passContext);
    const turn = await turns.take();
    if (!turn) {
      // Not ours: only keep the index (and the storage metrics read from it) near the truth; at most once an interval.
      if (now() - index.scannedAt >= interval) await index.scan();
      return { evicted: 0, bytes: 0, more: false, elsewhere: true };
    }
    try {
      await index.scan();
      return await evictNow(passContext);
    } finally {
      await turn.release();
    }
  }

  const flush = () => {
    // Still being served: as good as accessed now (what another replica's eviction reads).
    for (const digest of pins.served()) access.touch(digest);
    // A pull whose fill outlasts a flush is stored soon after: dropping its time then would leave
    // other replicas dating the blob by when they first listed it, newer than it is.
    return access.flush((digest) => nodes.has(digest), (digest) => fills.get(digest) !== undefined).catch((err: unknown) => {
      onError?.(err);
    });
  };
  const flusher = setInterval(() => void flush(), flushInterval);
  flusher.unref();

  let ready = (options.after ?? Promise.resolve()).then(() => index.scan());
  ready.then(
    () => scheduler.schedule(),
    (err: unknown) => {
      onError?.(err);
      scheduler.schedule();
    },
  );

  return {
    get ready() {
      return ready;
    },
    run: () => scheduler.run(),
    stats: () => ({ bytes: index.bytes, objects: nodes.size }),
    flush,
    async close() {
      clearInterval(flusher);
      await scheduler.close();
      for (const off of unsubscribe) off();
      await flush();
    },
  };
}

/** Keeps the index current from what the mirror does; returns the unsubscribers. */
function follow(events: MirrorEvents, index: StoreIndex, access: AccessLog): Array<() => void> {
  return [
    events.on('cache', (e) => {
      access.touch(e.digest);
      // A blob miss has no size yet: its fill adds it once committed.
      if (e.size !== undefined) index.add(e.digest, e.size, e.kind);
    }),
    events.on('fill:end', (e) => {
      if (e.outcome === 'committed') index.add(e.digest, e.bytes, 'blob');
    }),
    // A warm-up stored it (or found it stored): as good as a pull.
    events.on('stored', (e) => {
      access.touch(e.digest);
      index.add(e.digest, e.size, e.kind);
    }),
    // An operator's purge removed it behind the index's back.
    events.on('eviction', (e) => {
      if (e.reason === 'purge') index.remove(e.digest);
    }),
  ];
}
