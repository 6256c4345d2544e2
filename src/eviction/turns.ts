/**
 * Replicas that share one store take turns at eviction: a pass runs only on the replica that
 * holds the eviction lease, so two replicas never plan over the same objects at once (each
 * would count the other's removals as its own, and one's stale view could remove what the
 * other has just decided to keep).
 *
 * The turn is claimed per pass and released after it, rather than held by one leader for
 * good: a replica that dies mid-pass stops renewing, and the next replica takes over after
 * one lease lifetime with nothing to hand over, since every turn begins with a fresh look at
 * the shared store.
 */
import type { FillLease } from '../fill/lease.js';

export interface EvictionTurn {
  release(): Promise<void>;
}

export interface EvictionTurns {
  /** This replica's turn, or undefined while another replica is evicting. */
  take(): Promise<EvictionTurn | undefined>;
}

/** The one key every replica of a deployment competes for. */
const TURN = 'eviction';

export function leasedTurns(lease: Pick<FillLease, 'claim'>): EvictionTurns {
  return {
    async take() {
      const claim = await lease.claim(TURN);
      return claim.owner ? claim : undefined;
    },
  };
}
