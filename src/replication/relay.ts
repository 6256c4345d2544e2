/**
 * The client half of the replica relay: streams a blob from the replica that holds its fill,
 * over that replica's internal endpoint (`middleware/fill-relay`). The local fill verifies
 * size and digest as for an upstream body, so a replica is trusted for nothing.
 */
import type { FillRelay } from '../fill/coordinated.js';

export const REPLICA_SECRET_HEADER = 'x-mirror-replica-secret';
export const FILLS_PATH = '/_mirror/fills/';

/** How long the holder may take to answer (its fill is already running, or stored). */
const HEADERS_TIMEOUT_MS = 10_000;
/** A stalled relay fails after this long without a byte, and the lease decides who goes on. */
const BODY_TIMEOUT_MS = 30_000;

export function httpRelay(secret: string): FillRelay {
  // undici's index (its `request` on the global dispatcher) loads at start-up with replication only:
  // the upstreams load just the parts they need (src/upstream/undici.ts).
  const undici = import('undici');
  undici.catch(() => undefined);
  return async (holder, digest, signal) => {
    const { request } = await undici;
    const res = await request(new URL(FILLS_PATH + digest, holder), {
      method: 'GET',
      headers: { [REPLICA_SECRET_HEADER]: secret },
      signal,
      headersTimeout: HEADERS_TIMEOUT_MS,
      bodyTimeout: BODY_TIMEOUT_MS,
    });
    if (res.statusCode !== 200) {
      res.body.dump().catch(() => {});
      return undefined;
    }
    const length = res.headers['content-length'];
    const size = typeof length === 'string' && /^\d+$/.test(length) ? Number(length) : undefined;
    return { size, body: res.body };
  };
}
