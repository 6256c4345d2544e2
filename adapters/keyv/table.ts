/**
 * The one place that speaks Keyv's API, so that a change in it is fixed here only. A table is
 * the keys of one Keyv that start with one prefix, holding strings.
 *
 * Enumeration: Keyv 5 has `iterator()` on the stores that support it (the in-memory Map,
 * Redis, the SQL stores, Mongo…). On a store without it, a table that must be listable keeps
 * an index record, `index:<prefix>`, holding its keys. The trade-off: every set and delete of
 * a listable key then also rewrites that record (serialised within this process, so two
 * processes sharing such a store can lose each other's index entries), and the record grows
 * with the table. A key is added to the index before its value is written and removed after
 * its value is gone, so the index may name a key that is absent (skipped when listed), never
 * miss one that is present, in this process.
 *
 * Keyv quirks handled here:
 * - A Keyv built with a default TTL would expire cache records; every set passes TTL 0 (none).
 * - Keyv swallows store errors unless `throwOnErrors` is set (a failed get reads as a miss, a
 *   failed set as success); the Keyvs this adapter builds set it, and a `false` from set is an error.
 */
import type { Keyv } from 'keyv';

export interface KeyvTableOptions {
  /** list() must work on stores without `iterator()` (keeps an index record there). */
  listable: boolean;
}

/** Index updates per Keyv and index key: two tables (or stores) over one Keyv must not interleave them. */
const indexQueues = new WeakMap<Keyv, Map<string, Promise<unknown>>>();

export class KeyvTable {
  /** The store can enumerate its keys (Keyv `iterator()`), so no index is needed. */
  readonly enumerable: boolean;
  private readonly indexKey: string;

  constructor(
    private readonly keyv: Keyv,
    private readonly prefix: string,
    private readonly options: KeyvTableOptions,
  ) {
    this.enumerable = typeof keyv.iterator === 'function';
    this.indexKey = `index:${prefix}`;
  }

  private get indexed(): boolean {
    return this.options.listable && !this.enumerable;
  }

  async get(key: string): Promise<string | undefined> {
    const value: unknown = await this.keyv.get(this.prefix + key);
    return typeof value === 'string' ? value : undefined;
  }

  async set(key: string, value: string): Promise<void> {
    if (this.indexed) await this.updateIndex((keys) => !keys.has(key) && !!keys.add(key));
    await this.write(this.prefix + key, value);
  }

  /** Resolves false when the key was absent. */
  async delete(key: string): Promise<boolean> {
    const existed = await this.keyv.delete(this.prefix + key);
    if (this.indexed) await this.updateIndex((keys) => keys.delete(key));
    return existed;
  }

  /** Every key (without the table's prefix) that starts with `startsWith`, with its value. */
  async *entries(startsWith = ''): AsyncGenerator<[string, string]> {
    const full = this.prefix + startsWith;
    if (this.enumerable) {
      for await (const [key, value] of this.keyv.iterator!(undefined) as AsyncIterable<[unknown, unknown]>) {
        if (typeof key === 'string' && key.startsWith(full) && typeof value === 'string') yield [key.slice(this.prefix.length), value];
      }
      return;
    }
    if (!this.options.listable) throw new Error(`keys under ${this.prefix} are not listable on this store`);
    for (const key of await this.readIndex()) {
      if (!key.startsWith(startsWith)) continue;
      const value = await this.get(key);
      if (value !== undefined) yield [key, value];
    }
  }

  private async write(key: string, value: string): Promise<void> {
    // TTL 0: no expiry, whatever default TTL the Keyv was built with.
    if ((await this.keyv.set(key, value, 0)) === false) throw new Error(`the key-value store did not store ${key}`);
  }

  private async readIndex(): Promise<Set<string>> {
    const text = await this.keyv.get(this.indexKey);
    try {
      const keys: unknown = typeof text === 'string' ? JSON.parse(text) : [];
      return new Set(Array.isArray(keys) ? keys.filter((k): k is string => typeof k === 'string') : []);
    } catch {
      return new Set();
    }
  }

  /** Applies `change` to the index; it answers whether it changed anything (and so whether to write). */
  private updateIndex(change: (keys: Set<string>) => boolean): Promise<void> {
    let queues = indexQueues.get(this.keyv);
    if (!queues) indexQueues.set(this.keyv, (queues = new Map()));
    const run = (queues.get(this.indexKey) ?? Promise.resolve()).then(async () => {
      const keys = await this.readIndex();
      if (change(keys)) await this.write(this.indexKey, JSON.stringify([...keys]));
    });
    const tail = run.catch(() => {});
    queues.set(this.indexKey, tail);
    void tail.then(() => {
      if (queues.get(this.indexKey) === tail) queues.delete(this.indexKey);
    });
    return run;
  }
}

/** JSON text that does not parse (written by something else) reads as absent, like a cache miss. */
export function parseJson(json: string | undefined): unknown {
  if (json === undefined) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}
