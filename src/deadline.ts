/**
 * A signal that aborts at a deadline or when any of `signals` aborts.
 *
 * Not `AbortSignal.any([AbortSignal.timeout(ms), …])`: the combined signal holds its sources
 * only weakly, so the timeout signal can be garbage-collected and then never fires (seen
 * here on Node 20 — a fill outlived its timeout). A plain timer is held by the event loop.
 */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Stops the timer; call when the work is over. */
  clear(): void;
}

export function deadline(ms: number, reason: () => Error, ...signals: AbortSignal[]): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(reason()), ms);
  return {
    signal: signals.length ? AbortSignal.any([controller.signal, ...signals]) : controller.signal,
    clear: () => clearTimeout(timer),
  };
}
