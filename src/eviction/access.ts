/**
 * Last-access times: kept in memory and written to metadata in batches, so that a cache hit
 * costs no metadata write. Many hits of one object between two flushes become one record
 * write; a crash loses at most one flush interval of access times, which only makes eviction
 * see those objects as a little older than they are.
 */
import type { MetadataStore } from '../storage.js';

export const ACCESS_PREFIX = 'access/';

export interface AccessRecord {
  /** ms since the epoch. */
  at: number;
}

export class AccessLog {
  private readonly times = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly meta: MetadataStore,
    private readonly now: () => number,
  ) {}

  touch(digest: string): void {
    this.times.set(digest, this.now());
    this.dirty.add(digest);
  }

  /** A time read back from metadata (written by this process earlier, or by another replica): the later time wins. */
  merge(digest: string, at: number): void {
    if (at > (this.times.get(digest) ?? -Infinity)) this.times.set(digest, at);
  }

  get(digest: string): number | undefined {
    return this.times.get(digest);
  }

  forget(digest: string): void {
    this.times.delete(digest);
    this.dirty.delete(digest);
  }

  /**
   * Writes the times that changed since the last flush, for the digests `keep` accepts (those
   * stored); those `pending` accepts (still being fetched) wait for a later flush, and the
   * others are dropped from memory (a HEAD, a fill that failed).
   */
  flush(keep: (digest: string) => boolean, pending: (digest: string) => boolean = () => false): Promise<void> {
    this.flushing ??= this.write(keep, pending).finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(keep: (digest: string) => boolean, pending: (digest: string) => boolean): Promise<void> {
    const batch = [...this.dirty];
    this.dirty.clear();
    for (const [i, digest] of batch.entries()) {
      const at = this.times.get(digest);
      if (at === undefined) continue;
      if (!keep(digest)) {
        if (pending(digest)) this.dirty.add(digest);
        else this.times.delete(digest);
        continue;
      }
      try {
        await this.meta.set(ACCESS_PREFIX + digest, { at } satisfies AccessRecord);
      } catch (err) {
        // Try the rest again at the next flush rather than lose their times.
        for (const d of batch.slice(i)) this.dirty.add(d);
        throw err;
      }
    }
  }
}
