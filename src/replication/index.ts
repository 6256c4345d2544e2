/**
 * Replication from config: the leases (loaded only when configured, like the storage adapters),
 * the relay client, and the secret the internal endpoint checks.
 */
import { leasedTurns, type EvictionTurns } from '../eviction/turns.js';
import type { Coordination, FillLease } from '../fill/index.js';
import { readSecret } from '../secrets.js';
import { LEASE_RENEW_MS, LEASE_TTL_MS, type ReplicationConfig } from './config.js';
import { httpRelay } from './relay.js';

export { replicationSchema, type ReplicationConfig } from './config.js';
export { httpRelay, FILLS_PATH, REPLICA_SECRET_HEADER } from './relay.js';

export interface Replication {
  coordination: Coordination;
  /** Whose turn it is to evict: one replica at a time. */
  evictionTurns: EvictionTurns;
  secret: string;
  close(): Promise<void>;
}

/** The secret replicas share, from wherever the config says it is. */
export function replicationSecret(config: ReplicationConfig): string {
  return readSecret({ value: config.secret, file: config.secretFile, env: config.secretEnv }, 'replication.secret')!;
}

export function replicationFromConfig(config: ReplicationConfig): Replication {
  const secret = replicationSecret(config);
  const loaded = new Map<string, Promise<FillLease>>();
  /** A lease of one kind, connected on first use: a replica that never evicts never opens the second connection. */
  const lease = (kind: string) => {
    let found = loaded.get(kind);
    if (!found) {
      found = import('./redis-lease.js').then((m) =>
        m.redisFillLease({ url: config.redis, advertise: config.advertise, namespace: config.namespace, kind, ttlMs: LEASE_TTL_MS, renewMs: LEASE_RENEW_MS }),
      );
      loaded.set(kind, found);
    }
    return found;
  };
  const close = async () => {
    await Promise.allSettled([...loaded.values()].map(async (l) => (await l).close()));
  };
  const fills: FillLease = {
    ttlMs: LEASE_TTL_MS,
    claim: async (digest) => (await lease('fill-lease')).claim(digest),
    current: async (digest) => (await lease('fill-lease')).current(digest),
    close,
  };
  return leasedReplication(secret, fills, { claim: async (key) => (await lease('eviction-lease')).claim(key) }, close);
}

/** Replication over a fill lease and an eviction lease, wherever they are held (Redis, a cluster's primary). */
export function leasedReplication(secret: string, fills: FillLease, turns: Pick<FillLease, 'claim'>, close: () => Promise<void>): Replication {
  return { secret, coordination: { lease: fills, relay: httpRelay(secret) }, evictionTurns: leasedTurns(turns), close };
}
