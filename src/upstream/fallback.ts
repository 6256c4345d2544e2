/**
 * Ordered fallback across upstreams, for content that is safe to take from any of them
 * (addressed by digest and verified on arrival), or for tags where the config allows it.
 */
import { isOciError } from '../errors.js';
import type { UpstreamTarget } from '../state.js';

/** The target first, then its digest fallbacks. */
export function digestCandidates(target: UpstreamTarget): UpstreamTarget[] {
  return [target, ...(target.digestFallbacks ?? [])];
}

/**
 * Tries `attempt` on each target in order and returns the first success. An OCI error
 * (unknown here, unreachable, refused, wrong bytes) moves on to the next target; anything
 * else (an abort, a bug) stops at once. When every target fails, the first target's error
 * is the answer: it is the registry the client asked for.
 */
export async function firstAnswer<T>(
  targets: readonly UpstreamTarget[],
  attempt: (target: UpstreamTarget) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  let first: unknown;
  for (const [i, target] of targets.entries()) {
    try {
      return await attempt(target);
    } catch (err) {
      if (signal?.aborted || !isOciError(err)) throw err;
      if (i === 0) first = err;
    }
  }
  throw first;
}
