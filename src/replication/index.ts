/**
 * Replication from config: the lease (loaded only when configured, like the storage adapters),
 * the relay client, and the secret the internal endpoint checks.
 */
import type { Coordination, FillLease } from '../fill/index.js';
import { readSecret } from '../secrets.js';
import { LEASE_RENEW_MS, LEASE_TTL_MS, type ReplicationConfig } from './config.js';
import { httpRelay } from './relay.js';

export { replicationSchema, type ReplicationConfig } from './config.js';
export { httpRelay, FILLS_PATH, REPLICA_SECRET_HEADER } from './relay.js';

export interface Replication {
  coordination: Coordination;
  secret: string;
  close(): Promise<void>;
}

export function replicationFromConfig(config: ReplicationConfig): Replication {
  const secret = readSecret({ value: config.secret, file: config.secretFile, env: config.secretEnv }, 'replication.secret')!;
  let loaded: Promise<FillLease> | undefined;
  const lease = () =>
    (loaded ??= import('./redis-lease.js').then((m) => m.redisFillLease({ url: config.redis, advertise: config.advertise, namespace: config.namespace, ttlMs: LEASE_TTL_MS, renewMs: LEASE_RENEW_MS })));
  return {
    secret,
    coordination: {
      lease: {
        ttlMs: LEASE_TTL_MS,
        claim: async (digest) => (await lease()).claim(digest),
        current: async (digest) => (await lease()).current(digest),
        close: async () => {
          if (loaded) await (await loaded).close();
        },
      },
      relay: httpRelay(secret),
    },
    close: async () => {
      if (loaded) await (await loaded).close();
    },
  };
}
