/**
 * A fill source that asks the lease first: the owner fetches from the upstream, a replica
 * that lost the race streams the holder's fill in flight (`relay`). A holder that cannot be
 * reached (dead, or its fill just ended) is waited out until the lease is free or changes
 * hands, then claimed again; every wait is bounded by the lease's lifetime.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { OciError } from '../errors.js';
import type { FillSource, FillSourceResponse } from './fill.js';
import type { FillLease } from './lease.js';

/** Streams `digest` from another replica; undefined when that replica has no such fill or blob. */
export type FillRelay = (holder: string, digest: string, signal: AbortSignal) => Promise<FillSourceResponse | undefined>;

export interface Coordination {
  lease: FillLease;
  relay: FillRelay;
}

const POLL_MS = 250;

/**
 * Wraps `upstream` for one fill. `release` gives the lease up if this fill took it; call it
 * once the fill has settled (committed or failed), so that waiting replicas claim it then.
 */
export function coordinatedSource(digest: string, upstream: FillSource, { lease, relay }: Coordination): { source: FillSource; release: () => Promise<void> } {
  let release: () => Promise<void> = async () => {};
  const source: FillSource = async (signal) => {
    // A dead holder blocks the digest for one lease lifetime at most; a little more covers clock and poll slack.
    const giveUpAt = Date.now() + lease.ttlMs * 2 + 5_000;
    for (;;) {
      signal.throwIfAborted();
      const claim = await lease.claim(digest);
      if (claim.owner) {
        release = claim.release;
        return upstream(signal);
      }
      const relayed = await relay(claim.holder, digest, signal).catch(() => undefined);
      if (relayed) return { ...relayed, relayed: true };
      // The holder is gone or its fill just ended: wait until the lease is free or someone else holds it.
      while ((await lease.current(digest)) === claim.id) {
        if (Date.now() > giveUpAt) throw new OciError('UNAVAILABLE', `replica ${claim.holder} holds ${digest} but does not serve it`);
        await sleep(POLL_MS, undefined, { signal });
      }
    }
  };
  return { source, release: () => release() };
}
