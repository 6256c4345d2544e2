/**
 * The primary's leases: what Redis holds for replicas (see src/replication/redis-lease.ts),
 * held in one process's memory for the workers it forked. A claim lasts `ttlMs` unless its
 * holder renews it; renewal and release name the claim's id, so a holder whose claim expired
 * (a worker stuck for longer than a lifetime) never touches the claim of the one that took
 * over. A worker that dies loses its claims at once (`releaseOwner`), without waiting them out.
 */
import { randomUUID } from 'node:crypto';

export type TableClaim = { owner: true; id: string } | { owner: false; id: string; holder: string };

interface Entry {
  id: string;
  holder: string;
  /** The worker that claimed it. */
  owner: number;
  expiresAt: number;
}

export class LeaseTable {
  readonly #entries = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #now: () => number;
  #nextSweep = 0;

  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  /** Claims of every kind held now, expired ones included until the next sweep. */
  get size(): number {
    return this.#entries.size;
  }

  /** `holder` is where the owner's fills can be streamed from; `owner` is whose claim dies with it. */
  claim(key: string, holder: string, owner: number): TableClaim {
    this.#sweep();
    const held = this.#live(key);
    if (held) return { owner: false, id: held.id, holder: held.holder };
    const id = `${randomUUID()} ${holder}`;
    this.#entries.set(key, { id, holder, owner, expiresAt: this.#now() + this.#ttlMs });
    return { owner: true, id };
  }

  /** Extends the claim by one lifetime; false when it is no longer `id`'s. */
  renew(key: string, id: string): boolean {
    const held = this.#live(key);
    if (held?.id !== id) return false;
    held.expiresAt = this.#now() + this.#ttlMs;
    return true;
  }

  release(key: string, id: string): void {
    if (this.#entries.get(key)?.id === id) this.#entries.delete(key);
  }

  current(key: string): string | undefined {
    return this.#live(key)?.id;
  }

  /** Frees every claim of a worker that exited; returns how many there were. */
  releaseOwner(owner: number): number {
    let freed = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.owner !== owner) continue;
      this.#entries.delete(key);
      freed++;
    }
    return freed;
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Expired claims nobody asked about again would stay for good: gone at most once a lifetime. */
  #sweep(): void {
    const now = this.#now();
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + this.#ttlMs;
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
  }
}
