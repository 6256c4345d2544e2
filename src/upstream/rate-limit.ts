/**
 * What one upstream says about its rate limit, and the back-off a `429` starts. Docker Hub counts
 * manifest pulls and says so in `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`
 * (the number, then the window in seconds); those are kept for metrics and the status page. A
 * `429` means every further request before its `Retry-After` only spends the same budget again,
 * so until then the upstream gets none: requests are refused here, without a connection, and the
 * manifest cache serves tags stale meanwhile. One state per upstream, shared by all its URLs: a
 * registry's limit counts its client, not the URL the client used.
 */
import { OciError } from '../errors.js';

export interface RateLimitOptions {
  /** How long a `429` without a usable `Retry-After` holds the upstream off, ms. */
  backoff?: number;
  /** The longest any `Retry-After` holds it off, ms; 0 turns back-off off. */
  maxBackoff?: number;
  /** Told once when a back-off starts (not when a later 429 extends it). */
  onBackoff?: (event: BackoffEvent) => void;
  now?: () => number;
}

export interface BackoffEvent {
  upstream: string;
  /** How long requests are held off, whole seconds. */
  seconds: number;
  /** `retry-after`: the upstream said how long; `default`: it did not, `backoff` applies. */
  source: 'retry-after' | 'default';
}

/** One `ratelimit-*` header's figures. */
export interface RateLimitFigure {
  value: number;
  /** The window the figure counts over, seconds, when the header names one (`;w=`). */
  window?: number;
}

export interface RateLimitSnapshot {
  /** From the last `ratelimit-limit` the upstream sent; absent until one came. */
  limit?: number;
  /** From the last `ratelimit-remaining`. */
  remaining?: number;
  /** The window of the last limit (or remaining) figure, seconds. */
  window?: number;
  /** Seconds left in the current back-off; 0 when requests go through. */
  backoffSeconds: number;
}

export const DEFAULT_BACKOFF_MS = 60_000;
export const MAX_BACKOFF_MS = 3_600_000;

/** Errors `check` threw: no request was sent for them, so observers do not count them as upstream traffic. */
const refusals = new WeakSet<object>();

export function heldOff(err: unknown): boolean {
  return typeof err === 'object' && err !== null && refusals.has(err);
}

export class RateLimit {
  private readonly backoff: number;
  private readonly maxBackoff: number;
  private readonly onBackoff: RateLimitOptions['onBackoff'];
  private readonly now: () => number;
  private limit: RateLimitFigure | undefined;
  private remaining: RateLimitFigure | undefined;
  private until = 0;

  constructor(
    private readonly upstream: string,
    { backoff = DEFAULT_BACKOFF_MS, maxBackoff = MAX_BACKOFF_MS, onBackoff, now = Date.now }: RateLimitOptions = {},
  ) {
    this.maxBackoff = Math.max(0, maxBackoff);
    this.backoff = Math.min(Math.max(0, backoff), this.maxBackoff);
    this.onBackoff = onBackoff;
    this.now = now;
  }

  /** Throws TOOMANYREQUESTS, with the wait as `Retry-After`, while the upstream is held off. */
  check(): void {
    const seconds = this.backoffSeconds();
    if (seconds === 0) return;
    const err = new OciError('TOOMANYREQUESTS', `upstream ${this.upstream} rate limit reached; retry in ${seconds}s`, {
      headers: { 'Retry-After': String(seconds) },
    });
    refusals.add(err);
    throw err;
  }

  /** Takes in what an answer from the upstream's own origin says: its figures, and a 429's wait. */
  observe(status: number, headers: Record<string, string | string[] | undefined>): void {
    this.limit = parseRateLimitHeader(headers['ratelimit-limit']) ?? this.limit;
    this.remaining = parseRateLimitHeader(headers['ratelimit-remaining']) ?? this.remaining;
    if (status === 429) this.backOff(headers['retry-after']);
  }

  /**
   * Starts (or lengthens) the back-off a 429 asks for, as long as its `Retry-After` says. The
   * registry's 429 comes here through `observe`, its token server's directly: both count the
   * same client, and a token server refused every request until then would be asked by each.
   */
  backOff(retryAfter: string | string[] | undefined): void {
    const now = this.now();
    const said = retryAfterMs(retryAfter, now);
    const wait = Math.min(said ?? this.backoff, this.maxBackoff);
    if (wait <= 0) return;
    const startsNow = this.until <= now;
    // Concurrent 429s may say different things: the longest wait holds.
    this.until = Math.max(this.until, now + wait);
    if (startsNow) this.onBackoff?.({ upstream: this.upstream, seconds: Math.ceil(wait / 1000), source: said === undefined ? 'default' : 'retry-after' });
  }

  backoffSeconds(): number {
    const left = this.until - this.now();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  snapshot(): RateLimitSnapshot {
    const window = this.limit?.window ?? this.remaining?.window;
    return {
      ...(this.limit && { limit: this.limit.value }),
      ...(this.remaining && { remaining: this.remaining.value }),
      ...(window !== undefined && { window }),
      backoffSeconds: this.backoffSeconds(),
    };
  }
}

/**
 * `100;w=21600` (Docker Hub), a bare `100`, or a list (`100, 100;w=60`) whose first item is the
 * one in force. Anything else is not a figure: undefined, and the last good one stays.
 */
export function parseRateLimitHeader(value: string | string[] | undefined): RateLimitFigure | undefined {
  const first = (Array.isArray(value) ? value[0] : value)?.split(',')[0]?.trim();
  if (first === undefined) return undefined;
  const m = /^(\d{1,15})\s*((?:;\s*[\w-]+\s*=\s*[^;]*)*)$/.exec(first);
  if (!m) return undefined;
  const window = /(?:^|;)\s*w\s*=\s*(\d{1,15})\s*(?:;|$)/.exec(m[2]!);
  return { value: Number(m[1]), ...(window && { window: Number(window[1]) }) };
}

/** `Retry-After` as a wait in ms from `now`: delay-seconds or an HTTP-date; undefined when it is neither. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (v === undefined || v === '') return undefined;
  if (/^\d{1,10}$/.test(v)) return Number(v) * 1000;
  // Date.parse takes almost anything; an HTTP-date (IMF-fixdate or RFC 850) starts with a weekday and ends in GMT.
  if (v.length > 40 || !/^[A-Za-z]{3,9}, [\w :-]+ GMT$/.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}
