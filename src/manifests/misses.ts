/**
 * Tags the upstream said it does not have, remembered for a few seconds so that a loop of
 * pulls of a missing tag costs one upstream request per `ttl`, not one per pull.
 *
 * In this process's memory, not the shared store: they live seconds, sharing them would save
 * at most one request per replica, and records in the store would need a sweeper to go.
 * Bounded: past `max` names the oldest is forgotten first.
 */
export class Misses {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttl: number,
    private readonly now: () => number,
    private readonly max = 10_000,
  ) {}

  get enabled(): boolean {
    return this.ttl > 0;
  }

  add(key: string): void {
    if (!this.enabled) return;
    this.until.delete(key);
    if (this.until.size >= this.max) this.until.delete(this.until.keys().next().value!);
    this.until.set(key, this.now() + this.ttl);
  }

  has(key: string): boolean {
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(key);
    return false;
  }

  delete(key: string): void {
    this.until.delete(key);
  }
}
