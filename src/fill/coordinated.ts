/**
 * A fill source that asks the lease first: the owner fetches from the upstream, a replica
 * that lost the race streams the holder's fill in flight (`relay`). A holder that cannot be
 * reached (dead, or its fill just ended) is waited out until the lease is free or changes
 * hands, then claimed again; every wait is bounded by the lease's lifetime. A relay that
 * breaks mid-stream (the holder died) goes through the same steps and resumes where it broke,
 * so the clients reading this fill see a pause, not an error.
 */
import { Readable } from 'node:stream';
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
/** Relays that break, then resume elsewhere, before the fill gives up. */
const MAX_RESUMES = 3;

/**
 * Wraps `upstream` for one fill. `release` gives the lease up if this fill took it; call it
 * once the fill has settled (committed or failed), so that waiting replicas claim it then.
 */
export function coordinatedSource(digest: string, upstream: FillSource, { lease, relay }: Coordination): { source: FillSource; release: () => Promise<void> } {
  let release: () => Promise<void> = async () => {};

  const open = async (signal: AbortSignal): Promise<FillSourceResponse> => {
    // A dead holder blocks the digest for one lease lifetime at most; a little more covers clock and poll slack.
    const giveUpAt = Date.now() + lease.ttlMs * 2 + 5_000;
    for (;;) {
      signal.throwIfAborted();
      // Redis unreachable: fetching on our own costs one more upstream GET; failing would cost the pull.
      const claim = await lease.claim(digest).catch(() => undefined);
      if (!claim) return upstream(signal);
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

  const source: FillSource = async (signal) => {
    const first = await open(signal);
    if (!first.relayed) return first;
    // Relayed bytes are verified by this fill whatever their origin, so a resumed stream
    // (from the upstream or another holder) only has to skip what was already passed on.
    return { ...first, body: Readable.from(resuming(first.body, open, signal)) };
  };
  return { source, release: () => release() };
}

async function* resuming(first: Readable, open: (signal: AbortSignal) => Promise<FillSourceResponse>, signal: AbortSignal): AsyncGenerator<Buffer> {
  let body = first;
  let delivered = 0;
  for (let resumes = 0; ; resumes++) {
    let skip = delivered;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (skip >= chunk.length) {
          skip -= chunk.length;
          continue;
        }
        const fresh = skip > 0 ? chunk.subarray(skip) : chunk;
        skip = 0;
        delivered += fresh.length;
        yield fresh;
      }
      return;
    } catch (err) {
      body.destroy();
      if (signal.aborted || resumes >= MAX_RESUMES) throw err;
      body = (await open(signal)).body;
    }
  }
}
