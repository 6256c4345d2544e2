/**
 * A least-recently-used map with a byte budget: what the memo keeps of hot records and small
 * blobs. A Map keeps insertion order, so re-inserting on every hit makes its first key the
 * least recently used one; no linked list of our own to get wrong.
 */
export interface LruEntry<V> {
  value: V;
  /** What the entry costs in memory, as the caller estimates it. */
  bytes: number;
  /** When the entry stops being trusted (ms since the epoch); Infinity for never. */
  expiresAt: number;
}

export class ByteLru<V> {
  private readonly entries = new Map<string, LruEntry<V>>();
  private used = 0;

  constructor(readonly budget: number) {}

  /** The entry while it is trusted; an expired one is dropped, so the caller reads the store again. */
  get(key: string, now: number): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt <= now) {
      this.used -= entry.bytes;
      return undefined;
    }
    this.entries.set(key, entry);
    return entry.value;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** An entry larger than an eighth of the budget is not kept: one would push out too many others. */
  set(key: string, entry: LruEntry<V>): void {
    this.delete(key);
    if (entry.bytes > this.budget / 8) return;
    this.entries.set(key, entry);
    this.used += entry.bytes;
    while (this.used > this.budget) {
      const [oldest, old] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.used -= old.bytes;
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.used -= entry.bytes;
  }

  /** Bytes held, as estimated. */
  get size(): number {
    return this.used;
  }
}
