/**
 * The fill lease in Redis: `SET key "<claim id> <advertise>" NX PX ttl` claims a digest; a
 * timer renews it while the fill runs; renewal and release are compare-and-set Lua scripts,
 * so a holder whose lease expired (a long GC pause, a partition) never extends or deletes the
 * claim of the replica that took over. A holder that dies stops renewing: the key expires
 * after one ttl and the next claim wins.
 */
import { randomUUID } from 'node:crypto';
import { createClient } from '@keyv/redis';
import type { FillLease, LeaseClaim } from '../fill/lease.js';
import { heldClaim } from './held-claim.js';

export interface RedisLeaseOptions {
  url: string;
  /** This replica's base URL, told to the replicas that lose a race. */
  advertise: string;
  /** Key prefix, so that several mirror deployments can share one Redis. */
  namespace?: string;
  /** What is leased: one key space per kind (`fill-lease` for blob fills, `eviction-lease` for eviction turns). */
  kind?: string;
  ttlMs?: number;
  renewMs?: number;
}

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const COMMAND_TIMEOUT_MS = 5_000;

export function redisFillLease({ url, advertise, namespace = 'oci-mirror', kind = 'fill-lease', ttlMs = 10_000, renewMs = 3_000 }: RedisLeaseOptions): FillLease {
  const client = createClient({
    url,
    commandOptions: { timeout: COMMAND_TIMEOUT_MS },
    socket: { connectTimeout: COMMAND_TIMEOUT_MS, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) },
  });
  // Failures reach callers as failed commands; an unheard 'error' event would end the process.
  client.on('error', () => {});
  let connecting: Promise<unknown> | undefined;
  const connected = async () => {
    connecting ??= client.connect();
    await connecting;
    return client;
  };
  const key = (digest: string) => `${namespace}:${kind}:${digest}`;
  const renewals = new Set<NodeJS.Timeout>();

  return {
    ttlMs,
    async claim(digest): Promise<LeaseClaim> {
      const redis = await connected();
      const value = `${randomUUID()} ${advertise}`;
      const set = await redis.set(key(digest), value, { condition: 'NX', expiration: { type: 'PX', value: ttlMs } });
      if (set === 'OK') {
        return heldClaim(renewals, renewMs, {
          renew: () => redis.eval(RENEW, { keys: [key(digest)], arguments: [value, String(ttlMs)] }),
          release: () => redis.eval(RELEASE, { keys: [key(digest)], arguments: [value] }),
        });
      }
      const current = await redis.get(key(digest));
      // Released between our SET and GET: claim again.
      if (current === null) return this.claim(digest);
      const space = current.indexOf(' ');
      return { owner: false, id: current, holder: current.slice(space + 1) };
    },
    async current(digest) {
      return (await (await connected()).get(key(digest))) ?? undefined;
    },
    async close() {
      for (const t of renewals) clearInterval(t);
      renewals.clear();
      if (client.isOpen) await client.close();
    },
  };
}
