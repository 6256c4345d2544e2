/**
 * A claim this process won, as both leases hand it out (Redis for replicas, the cluster primary
 * for workers): renewed on a timer until released, released once however often it is asked.
 * Renewal and release are compare-and-set on the lease's side, so a claim that expired in the
 * meantime is neither extended nor removed from its new holder.
 */
import type { LeaseClaim } from '../fill/lease.js';

export interface ClaimOps {
  renew(): Promise<unknown>;
  release(): Promise<unknown>;
}

/** `renewals` holds the timers of one lease's claims, for its close(). */
export function heldClaim(renewals: Set<NodeJS.Timeout>, renewMs: number, { renew, release }: ClaimOps): Extract<LeaseClaim, { owner: true }> {
  const timer = setInterval(() => {
    // A failed renewal is retried at the next tick; the lifetime leaves room for two misses.
    renew().catch(() => {});
  }, renewMs);
  timer.unref();
  renewals.add(timer);
  let released: Promise<void> | undefined;
  return {
    owner: true,
    release() {
      released ??= (async () => {
        clearInterval(timer);
        renewals.delete(timer);
        await release();
      })();
      return released;
    },
  };
}
