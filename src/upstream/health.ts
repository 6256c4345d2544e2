/**
 * Failure tracking for one upstream URL, after the `max_fails` / `fail_timeout` rule that
 * Verdaccio's uplinks use: `maxFails` failures in a row take the URL out of rotation for
 * `failTimeout`; after that one request is let through as a probe, and its outcome decides.
 * So a dead URL costs one connect timeout per `failTimeout`, not one per request.
 *
 * When the upstream has no other URL in rotation (a single URL, or all of them down), waiting
 * out `failTimeout` only prolongs the outage: nothing else is serving. Such a last resort is
 * probed again `probeInterval` after its last failure instead, still one probe at a time, so
 * service resumes about that long after the upstream returns, and a hanging upstream still
 * costs one timeout per probe, never one per request.
 */
export interface HealthOptions {
  /** Failures in a row that take the URL out of rotation. */
  maxFails?: number;
  /** How long it stays out while other URLs of its upstream serve, ms. */
  failTimeout?: number;
  /** How soon after a failure it is probed again when no other URL of its upstream is in rotation, ms. */
  probeInterval?: number;
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
  private readonly probeInterval: number;
  private readonly now: () => number;
  private failures = 0;
  private lastFailure = 0;
  private probe = false;

  constructor({ maxFails = 1, failTimeout = 30_000, probeInterval = 1_000, now = Date.now }: HealthOptions = {}) {
    this.maxFails = Math.max(1, maxFails);
    this.failTimeout = failTimeout;
    this.probeInterval = probeInterval;
    this.now = now;
  }

  /** Whether requests go to this URL without being probes. */
  get inRotation(): boolean {
    return this.failures < this.maxFails;
  }

  /**
   * Whether a request may go to this URL now. For a URL whose time out is over, the first
   * caller gets the probe and must report its outcome with success(), failure() or release().
   * `lastResort`: no other URL of the upstream is in rotation, so the shorter probeInterval applies.
   */
  acquire(lastResort = false): boolean {
    if (this.inRotation) return true;
    if (this.probe || this.now() < this.retryAt(lastResort)) return false;
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
    this.lastFailure = this.now();
  }

  /** The request said nothing about health (the caller aborted it). */
  release(): void {
    this.probe = false;
  }

  /** When a URL out of rotation may be probed next (ms since the epoch). */
  retryAt(lastResort = false): number {
    return this.lastFailure + (lastResort ? Math.min(this.probeInterval, this.failTimeout) : this.failTimeout);
  }

  snapshot(lastResort = false): HealthSnapshot {
    if (this.inRotation) return { state: 'up', failures: this.failures };
    return { state: this.probe ? 'probing' : 'down', failures: this.failures, retryAt: this.retryAt(lastResort) };
  }
}
