/**
 * What a mirror tells its observers (metrics, logs, eviction), as one typed emitter per mirror.
 * It is created by `createMirror` and never module-global: two mirrors in one process must not
 * count each other's pulls.
 */
import type { FillRefusalReason } from '../fill/limits.js';
import type { BackoffEvent } from '../upstream/rate-limit.js';

export type CacheResult = 'HIT' | 'MISS' | 'JOIN' | 'REVALIDATED' | 'STALE';
export type ContentKind = 'manifest' | 'blob';

/** A manifest or blob request was answered with this cache outcome (the `X-Mirror-Cache` header). */
export interface CacheEvent {
  kind: ContentKind;
  result: CacheResult;
  /** The upstream the request was routed to. */
  upstream: string;
  /** The repository as that upstream knows it. */
  repository: string;
  digest: string;
  method: string;
  /** Size of the stored object when known (a manifest's bytes; a blob's size on a hit). */
  size?: number;
}

/** A tag list or referrers index was answered with this cache outcome (the `X-Mirror-Cache` header). */
export interface ListEvent {
  kind: 'tags' | 'referrers';
  result: Exclude<CacheResult, 'JOIN'>;
  upstream: string;
  repository: string;
}

/** The response that followed a CacheEvent has ended. */
export interface ServedEvent extends CacheEvent {
  status: number;
  /** Body bytes sent: the whole body when the response completed, 0 when the client went away first. */
  bytes: number;
  complete: boolean;
  durationMs: number;
}

/** Every request the mirror middleware handled, once its response has ended. */
export interface RequestEvent {
  /** The OCI route kind, or `invalid` for a `/v2/` path that did not parse. */
  route: 'base' | 'manifest' | 'blob' | 'tags' | 'referrers' | 'invalid';
  method: string;
  status: number;
  bytes: number;
  complete: boolean;
  durationMs: number;
}

export interface FillStartEvent {
  digest: string;
}

export interface FillEndEvent {
  digest: string;
  /** `existing`: the store had the blob already, nothing was fetched. */
  outcome: 'committed' | 'existing' | 'failed';
  /** Bytes received (kept or not), from the upstream or, with `source: 'replica'`, from another replica. */
  bytes: number;
  /**
   * Where the bytes came from: an upstream, or another replica's fill in flight (replication).
   * A relay that lost its replica and resumed from the upstream still counts as `replica`.
   */
  source: 'upstream' | 'replica';
  durationMs: number;
  /** An error code or short reason when it failed. */
  error?: string;
  /** Set when a fill limit stopped it (too large, or no room on the spool's file system), with the error's message. */
  refused?: { reason: FillRefusalReason; message: string };
}

/** One request to an upstream, measured to its response headers. */
export interface UpstreamEvent {
  upstream: string;
  method: string;
  repository: string;
  /** The HTTP status, when an answer came. */
  status?: number;
  /** A short reason when no answer came (refused, timed out…). */
  error?: string;
  durationMs: number;
}

export interface EvictionEvent {
  digest: string;
  kind: ContentKind;
  bytes: number;
  /** `purge`: an operator removed it (`oci-mirror purge`, the admin API), not eviction. */
  reason: 'ttl' | 'size' | 'purge';
}

/**
 * Content that is in the store because of work other than a client's request (a warm-up):
 * eviction learns of it and counts it as used now, as it would a pull.
 */
export interface StoredEvent {
  digest: string;
  kind: ContentKind;
  size: number;
}

export interface MirrorEventMap {
  request: RequestEvent;
  cache: CacheEvent;
  list: ListEvent;
  served: ServedEvent;
  'fill:start': FillStartEvent;
  'fill:end': FillEndEvent;
  upstream: UpstreamEvent;
  /** An upstream answered 429 and gets no requests for a while (once per back-off, not per 429). */
  'upstream:backoff': BackoffEvent;
  eviction: EvictionEvent;
  stored: StoredEvent;
}

export type MirrorEventName = keyof MirrorEventMap;
type Listener<K extends MirrorEventName> = (event: MirrorEventMap[K]) => void;

export class MirrorEvents {
  private readonly listeners = new Map<MirrorEventName, Set<Listener<never>>>();

  /** Subscribes; the returned function unsubscribes. */
  on<K extends MirrorEventName>(name: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(name, listener);
  }

  off<K extends MirrorEventName>(name: K, listener: Listener<K>): void {
    this.listeners.get(name)?.delete(listener as Listener<never>);
  }

  /** Whether anyone listens: lets emitters skip building an event nobody reads. */
  has(name: MirrorEventName): boolean {
    return (this.listeners.get(name)?.size ?? 0) > 0;
  }

  /**
   * Calls every listener synchronously. A listener that throws is reported as a process
   * warning and skipped: an observer's bug must never fail a pull.
   */
  emit<K extends MirrorEventName>(name: K, event: MirrorEventMap[K]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<K>)(event);
      } catch (err) {
        process.emitWarning(err instanceof Error ? err : String(err), { code: 'OCI_MIRROR_LISTENER', detail: `in a "${name}" listener` });
      }
    }
  }
}
