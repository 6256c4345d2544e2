/**
 * Eviction in the background: an index of what the store holds (size, kind, last access,
 * references), kept current from the mirror's events, and passes that remove what
 * `planEviction` picks, a bounded number per pass.
 *
 * At start-up one scan builds the index from the store and reconciles metadata with it:
 * manifest and access records whose bytes are gone (a crash between two deletes) are removed.
 *
 * Replicas over one store (`turns`) see each other's work only through that store: each pass
 * runs on one replica at a time and begins with a fresh scan, which learns what the others
 * stored, removed and last accessed. Their responses in progress are invisible, so content
 * whose shared access time is recent counts as in use: every replica rewrites the access time
 * of what it is serving at each flush, which keeps a long download recent for the others.
 */
import { manifestKey } from '../../middleware/manifests/cache.js';
import type { ContentKind, MirrorEvents } from '../events/index.js';
import type { Fills } from '../fill/index.js';
import { readCapped } from '../http.js';
import type { Storage } from '../storage.js';
import { ACCESS_PREFIX, AccessLog, type AccessRecord } from './access.js';
import { trackPins } from './pins.js';
import { planEviction, type PlanNode, type Victim } from './plan.js';
import { manifestReferences } from './references.js';
import type { EvictionTurns } from './turns.js';

const MANIFEST_PREFIX = manifestKey('');
/** Tag records (see middleware/manifests/cache.ts): `tag/<upstream>/<repository>:<tag>` → `{ digest, … }`. */
const TAG_PREFIX = 'tag/';

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

export interface EvictionPass {
  evicted: number;
  bytes: number;
  /** The batch limit stopped the pass; another follows soon. */
  more: boolean;
  /** Another replica held the turn: this one removed nothing. */
  elsewhere?: boolean;
}

export interface ScanResult {
  objects: number;
  bytes: number;
  /** Metadata records removed because their bytes were gone. */
  reconciled: number;
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

interface Node {
  size: number;
  kind: ContentKind;
  /** When the index learnt of it: the last access for want of a recorded one. */
  addedAt: number;
  refs?: readonly string[];
}

export function createEviction(options: EvictionOptions): Eviction {
  const { storage, events, fills, maxBytes, ttl, interval, batch, maxManifestBytes = 4 * 1024 * 1024, now = Date.now, onError } = options;
  const flushInterval = options.flushInterval ?? Math.min(interval, 30_000);
  const { turns } = options;
  const recentMs = options.recentMs ?? 3 * flushInterval;
  const nodes = new Map<string, Node>();
  /** Manifests whose references are not read yet. */
  const unread = new Set<string>();
  /** Responses in progress, per digest: what is being served is never removed. */
  const pins = trackPins(events);
  const access = new AccessLog(storage.meta, now);
  let bytes = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  let running: Promise<EvictionPass> | undefined;
  /** When the last scan began (now()); a follower rescans at most once an interval. */
  let scannedAt = -Infinity;

  function add(digest: string, size: number, kind: ContentKind): void {
    const node = nodes.get(digest);
    if (node) {
      // The bytes were there first; the manifest record says what they are.
      if (kind === 'manifest' && node.kind !== 'manifest') {
        node.kind = 'manifest';
        unread.add(digest);
      }
      return;
    }
    nodes.set(digest, { size, kind, addedAt: now() });
    bytes += size;
    if (kind === 'manifest') unread.add(digest);
    if (maxBytes !== undefined && bytes > maxBytes) schedule(Math.min(interval, 1000));
  }

  function remove(digest: string): void {
    const node = nodes.get(digest);
    if (!node) return;
    nodes.delete(digest);
    unread.delete(digest);
    bytes -= node.size;
    access.forget(digest);
  }

  const isPinned = (digest: string) => pins.isServed(digest) || fills.get(digest) !== undefined;
  const lastAccess = (digest: string, node: Node) => access.get(digest) ?? node.addedAt;
  /** Being served or filled here, or (replicas) used recently enough that another replica may be serving it. */
  const inUse = (digest: string, at: number) => {
    if (isPinned(digest)) return true;
    if (!turns) return false;
    const node = nodes.get(digest);
    return node !== undefined && lastAccess(digest, node) > at - recentMs;
  };

  const unsubscribe = [
    events.on('cache', (e) => {
      access.touch(e.digest);
      // A blob miss has no size yet: its fill adds it once committed.
      if (e.size !== undefined) add(e.digest, e.size, e.kind);
    }),
    events.on('fill:end', (e) => {
      if (e.outcome === 'committed') add(e.digest, e.bytes, 'blob');
    }),
    // A warm-up stored it (or found it stored): as good as a pull.
    events.on('stored', (e) => {
      access.touch(e.digest);
      add(e.digest, e.size, e.kind);
    }),
    // An operator's purge removed it behind the index's back.
    events.on('eviction', (e) => {
      if (e.reason === 'purge') remove(e.digest);
    }),
    () => pins.stop(),
  ];

  async function scan(): Promise<ScanResult> {
    let reconciled = 0;
    const since = now();
    scannedAt = since;
    const listed = new Set<string>();
    for await (const { digest, size } of storage.blobs.list()) {
      listed.add(digest);
      add(digest, size, 'blob');
    }
    // Gone since the index learnt of it: evicted or purged by another replica. What arrived
    // during the listing may have been missed by it, and stays.
    for (const [digest, node] of nodes) if (!listed.has(digest) && node.addedAt < since && !isPinned(digest)) remove(digest);
    for await (const [key] of storage.meta.list(MANIFEST_PREFIX)) {
      const digest = key.slice(MANIFEST_PREFIX.length);
      if (nodes.has(digest)) add(digest, 0, 'manifest');
      else {
        // Stored after the listing went past it? Then it is no orphan.
        const info = await storage.blobs.stat(digest).catch(() => undefined);
        if (info) add(digest, info.size, 'manifest');
        else if ((await storage.meta.delete(key)) === true) reconciled++;
      }
    }
    for await (const [key, record] of storage.meta.list<AccessRecord>(ACCESS_PREFIX)) {
      const digest = key.slice(ACCESS_PREFIX.length);
      if (nodes.has(digest)) access.merge(digest, record.at);
      else if (!(await storage.blobs.stat(digest).catch(() => undefined)) && (await storage.meta.delete(key))) reconciled++;
    }
    return { objects: nodes.size, bytes, reconciled };
  }

  /** Reads the references of manifests new to the index; returns every reference it read. */
  async function readReferences(): Promise<Set<string>> {
    const read = new Set<string>();
    for (const digest of [...unread]) {
      unread.delete(digest);
      const node = nodes.get(digest);
      if (!node) continue;
      const stream = await storage.blobs.read(digest);
      if (!stream) {
        remove(digest); // gone behind our back
        continue;
      }
      try {
        node.refs = manifestReferences(await readCapped(stream, maxManifestBytes, 'stored manifest'));
      } catch {
        node.refs = [];
      }
      for (const ref of node.refs) read.add(ref);
    }
    return read;
  }

  async function pass(): Promise<EvictionPass> {
    // A scan that failed (storage down at start-up) is tried again rather than given up on.
    await ready.catch(() => (ready = scan()));
    await ready;
    if (!turns) return evictNow();
    const turn = await turns.take();
    if (!turn) {
      // Not ours: only keep the index (and the storage metrics read from it) near the truth.
      if (now() - scannedAt >= interval) await scan();
      return { evicted: 0, bytes: 0, more: false, elsewhere: true };
    }
    try {
      await scan();
      return await evictNow();
    } finally {
      await turn.release();
    }
  }

  async function evictNow(): Promise<EvictionPass> {
    await readReferences();
    const started = now();
    const view = new Map<string, PlanNode>();
    for (const [digest, node] of nodes) view.set(digest, { size: node.size, kind: node.kind, lastAccess: lastAccess(digest, node), refs: node.refs });
    const plan = planEviction({ nodes: view, isPinned: (digest) => inUse(digest, started), now: started, ttl, maxBytes, limit: batch });

    const result: EvictionPass = { evicted: 0, bytes: 0, more: plan.more };
    const gone = new Set<string>();
    /** What a manifest kept after all (or one cached since the plan) references: it stays too. */
    const kept = new Set<string>();
    for (const victim of plan.victims) {
      for (const ref of await readReferences()) kept.add(ref);
      if (kept.has(victim.digest) || !stillEvictable(victim, started)) {
        // The plan freed this manifest's references on the assumption that it goes.
        for (const ref of nodes.get(victim.digest)?.refs ?? []) kept.add(ref);
        continue;
      }
      await evict(victim);
      gone.add(victim.digest);
      result.evicted++;
      result.bytes += victim.size;
    }
    if (plan.victims.some((v) => v.kind === 'manifest' && gone.has(v.digest))) await forgetTags(gone);
    return result;
  }

  /** The plan is a snapshot; a request may have come for the object since. */
  function stillEvictable(victim: Victim, plannedAt: number): boolean {
    const node = nodes.get(victim.digest);
    if (!node || isPinned(victim.digest)) return false;
    return lastAccess(victim.digest, node) <= plannedAt;
  }

  async function evict(victim: Victim): Promise<void> {
    const { digest, kind } = victim;
    // The manifest record first: from then on the manifest is simply not cached.
    if (kind === 'manifest') await storage.meta.delete(manifestKey(digest));
    await storage.blobs.delete(digest);
    await storage.meta.delete(ACCESS_PREFIX + digest);
    remove(digest);
    events.emit('eviction', { digest, kind, bytes: victim.size, reason: victim.reason });
  }

  /** Tags that pointed at removed manifests would only ever lead to a miss. */
  async function forgetTags(gone: ReadonlySet<string>): Promise<void> {
    for await (const [key, record] of storage.meta.list<{ digest?: string }>(TAG_PREFIX)) {
      if (record.digest !== undefined && gone.has(record.digest)) await storage.meta.delete(key);
    }
  }

  function schedule(delay: number): void {
    if (closed) return;
    const at = Date.now() + delay;
    if (timer && timerAt <= at) return;
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(() => {
      timer = undefined;
      timerAt = Infinity;
      run().then(
        (r) => schedule(r.more ? 0 : interval),
        () => schedule(interval),
      );
    }, delay);
    timer.unref();
  }

  function run(): Promise<EvictionPass> {
    running ??= pass()
      .catch((err: unknown) => {
        onError?.(err);
        throw err;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
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

  let ready = (options.after ?? Promise.resolve()).then(scan);
  ready.then(
    () => schedule(interval),
    (err: unknown) => {
      onError?.(err);
      schedule(interval);
    },
  );

  return {
    get ready() {
      return ready;
    },
    run,
    stats: () => ({ bytes, objects: nodes.size }),
    flush,
    async close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(flusher);
      await running?.catch(() => {});
      for (const off of unsubscribe) off();
      await flush();
    },
  };
}
