/**
 * Failure tracking for one upstream URL, after the `max_fails` / `fail_timeout` rule that
 * Verdaccio's uplinks use: `maxFails` failures in a row take the URL out of rotation for
 * `failTimeout`; after that one request is let through as a probe, and its outcome decides.
 * So a dead URL costs one connect timeout per `failTimeout`, not one per request.
 */
export interface HealthOptions {
  /** Failures in a row that take the URL out of rotation. */
  maxFails?: number;
  /** How long it stays out, ms. */
  failTimeout?: number;
  now?: () => number;
}

export type HealthState = 'up' | 'down' | 'probing';

export interface HealthSnapshot {
  state: HealthState;
  failures: number;
  /** When a down URL will be probed again (ms since the epoch). */
  retryAt?: number;
}

export class Health {
  private readonly maxFails: number;
  private readonly failTimeout: number;
  private readonly now: () => number;
  private failures = 0;
  private downUntil = 0;
  private probe = false;

  constructor({ maxFails = 1, failTimeout = 30_000, now = Date.now }: HealthOptions = {}) {
    this.maxFails = Math.max(1, maxFails);
    this.failTimeout = failTimeout;
    this.now = now;
  }

  /**
   * Whether a request may go to this URL now. For a URL whose time out is over, the first
   * caller gets the probe and must report its outcome with success(), failure() or release().
   */
  acquire(): boolean {
    if (this.failures < this.maxFails) return true;
    if (this.probe || this.now() < this.downUntil) return false;
    this.probe = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.probe = false;
  }

  failure(): void {
    this.failures++;
    this.probe = false;
    if (this.failures >= this.maxFails) this.downUntil = this.now() + this.failTimeout;
  }

  /** The request said nothing about health (the caller aborted it). */
  release(): void {
    this.probe = false;
  }

  snapshot(): HealthSnapshot {
    if (this.failures < this.maxFails) return { state: 'up', failures: this.failures };
    return { state: this.probe ? 'probing' : 'down', failures: this.failures, retryAt: this.downUntil };
  }
}
