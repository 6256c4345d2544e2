/**
 * Tag lists and referrers indexes, cached per upstream and repository so that they survive an
 * upstream outage, with the rules of tags (src/manifests/cache.ts):
 *
 * - Within `ttl` of the upstream's last answer, served without asking it.
 * - After that, asked again; when the upstream is down or overloaded the cached answer is
 *   served stale; an upstream 404 forgets the repository's cached answers and is passed on.
 * - An answer fetched with a client's own credentials is that client's: it is neither cached
 *   nor served from the cache.
 *
 * One record per (kind, upstream, repository) holds the answers to its last few distinct
 * queries (`n`/`last`, or subject digest and `artifactType`), bounded in number and in bytes:
 * a client inventing `last` values or subject digests (both answer 200 upstream) must not
 * grow the store without end. Replicas writing one record at once may drop each other's
 * newest entry, which costs one more upstream request later, never a wrong answer.
 */
import type { CacheResult } from '../events/index.js';
import { isOciError } from '../errors.js';
import type { UpstreamTarget } from '../state.js';
import type { MetadataStore } from '../storage.js';
import { isTransient } from '../upstream/errors.js';

export const LIST_PREFIX = 'list/';

export type ListKind = 'tags' | 'referrers';

/** `list/<kind>/<upstream>/<repository>`: per upstream, since two registries' `nginx` must never mix. */
export const listKey = (kind: ListKind, route: { upstream: { name: string }; repository: string }): string =>
  `${LIST_PREFIX}${kind}/${route.upstream.name}/${route.repository}`;

/** Distinct queries remembered per repository and kind. */
export const MAX_LIST_ENTRIES = 16;

interface ListEntry<T> {
  query: string;
  value: T;
  /** When the upstream last gave this answer (ms since the epoch). */
  checkedAt: number;
}

interface ListRecord<T> {
  entries: Array<ListEntry<T>>;
}

export interface ListResult<T> {
  value: T;
  cache: Exclude<CacheResult, 'JOIN'>;
}

export interface ListCacheOptions {
  meta: MetadataStore;
  /** How long an answer is trusted without asking the upstream, ms. */
  ttl?: number;
  /** The most bytes (as JSON) one record keeps; older entries go first. */
  maxBytes?: number;
  now?: () => number;
}

export class ListCache {
  private readonly meta: MetadataStore;
  private readonly ttl: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  /** Concurrent requests for one answer share one upstream request. */
  private readonly inFlight = new Map<string, Promise<ListResult<unknown>>>();

  constructor(options: ListCacheOptions) {
    this.meta = options.meta;
    this.ttl = options.ttl ?? 300_000;
    this.maxBytes = options.maxBytes ?? 8 * 1024 * 1024;
    this.now = options.now ?? Date.now;
  }

  /**
   * The answer to `query` on the target's repository: from the cache or from `fetch`, which
   * asks the upstream and rejects with an OciError (404 as NAME_UNKNOWN or MANIFEST_UNKNOWN).
   */
  async answer<T>(kind: ListKind, target: UpstreamTarget, query: string, fetch: () => Promise<T>): Promise<ListResult<T>> {
    if (target.credentials) return { value: await fetch(), cache: 'MISS' };
    const key = listKey(kind, target);
    const record = await this.meta.get(key);
    const cached = entriesOf<T>(record).find((e) => e.query === query);
    if (cached && this.now() - cached.checkedAt < this.ttl) return { value: cached.value, cache: 'HIT' };

    const flight = `${key}\n${query}`;
    let pending = this.inFlight.get(flight) as Promise<ListResult<T>> | undefined;
    if (!pending) {
      pending = this.refresh(key, query, cached, record !== undefined, fetch).finally(() => this.inFlight.delete(flight));
      this.inFlight.set(flight, pending);
    }
    return pending;
  }

  private async refresh<T>(
    key: string,
    query: string,
    cached: ListEntry<T> | undefined,
    /** A record is stored: only then is there anything for a 404 to delete (an upstream without referrers answers 404 every time). */
    stored: boolean,
    fetch: () => Promise<T>,
  ): Promise<ListResult<T>> {
    let value: T;
    try {
      value = await fetch();
    } catch (err) {
      if (cached && isTransient(err)) return { value: cached.value, cache: 'STALE' };
      if (stored && isOciError(err) && err.status === 404) await this.meta.delete(key);
      throw err;
    }
    await this.keep(key, { query, value, checkedAt: this.now() });
    const same = cached !== undefined && JSON.stringify(cached.value) === JSON.stringify(value);
    return { value, cache: same ? 'REVALIDATED' : 'MISS' };
  }

  /** Puts the entry first in its record, within the record's bounds. */
  private async keep<T>(key: string, entry: ListEntry<T>): Promise<void> {
    // Read again: another request may have added an entry while this one was upstream.
    const others = entriesOf<T>(await this.meta.get(key)).filter((e) => e.query !== entry.query);
    const entries = [entry, ...others].slice(0, MAX_LIST_ENTRIES);
    let bytes = entries.reduce((sum, e) => sum + JSON.stringify(e).length, 0);
    while (entries.length > 1 && bytes > this.maxBytes) bytes -= JSON.stringify(entries.pop()).length;
    if (bytes > this.maxBytes) return;
    await this.meta.set(key, { entries } satisfies ListRecord<T>);
  }
}

/** A record's entries, or none when it is absent or not the shape this code writes. */
function entriesOf<T>(record: unknown): Array<ListEntry<T>> {
  const entries = (record as ListRecord<T> | undefined)?.entries;
  if (!Array.isArray(entries)) return [];
  return entries.filter((e) => typeof e?.query === 'string' && typeof e.checkedAt === 'number' && e.value !== undefined);
}
