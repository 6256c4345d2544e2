/**
 * How soon a dead worker is replaced: at once while deaths are rare, then later and later
 * while they keep coming (a crash loop: storage gone, a bad upstream answer that kills), so
 * that the primary never spins forking workers that die. The surviving workers serve meanwhile.
 */
export interface RestartPolicy {
  /** Replacements within `windowMs` that go at once. Default 5. */
  burst?: number;
  windowMs?: number;
  /** The longest a replacement waits. Default 30 s. */
  maxDelayMs?: number;
}

export interface Restarts {
  /** Milliseconds to wait before the next replacement, counted as made at `now` plus that wait. */
  next(now: number): number;
}

const FIRST_DELAY_MS = 1_000;

export function restarts({ burst = 5, windowMs = 60_000, maxDelayMs = 30_000 }: RestartPolicy = {}): Restarts {
  /** When the replacements within the window were (or will be) made; never longer than the window allows. */
  let recent: number[] = [];
  return {
    next(now) {
      recent = recent.filter((t) => t > now - windowMs);
      const over = recent.length - burst + 1;
      const delay = over <= 0 ? 0 : Math.min(maxDelayMs, FIRST_DELAY_MS * 2 ** (over - 1));
      recent.push(now + delay);
      return delay;
    },
  };
}
