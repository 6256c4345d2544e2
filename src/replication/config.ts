/**
 * The `replication` section: replicas of one mirror over shared storage agree through Redis
 * on which of them fetches a blob, and stream it from each other.
 *
 *   replication:
 *     redis: redis://redis:6379
 *     advertise: http://mirror-1:5000     # how the other replicas reach this one
 *     secretFile: /run/secrets/replica    # shared by every replica; guards /_mirror/fills/
 */
import { z } from 'zod';

export const replicationSchema = z
  .object({
    redis: z.string().regex(/^rediss?:\/\/[^/]/, 'must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379'),
    advertise: z.string().refine(
      (v) => {
        try {
          const u = new URL(v);
          return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname.replace(/\/+$/, '') === '';
        } catch {
          return false;
        }
      },
      { message: 'must be this replica\'s http:// or https:// origin, as the other replicas reach it, e.g. http://10.0.0.5:5000' },
    ),
    secret: z.string().min(16, 'must be at least 16 characters').optional(),
    secretFile: z.string().optional(),
    secretEnv: z.string().optional(),
    /** Key prefix in Redis, when several mirror deployments share one Redis. */
    namespace: z.string().regex(/^[A-Za-z0-9._-]+$/, 'may only hold letters, digits, ".", "_" and "-"').default('oci-mirror'),
  })
  .strict()
  .refine((r) => [r.secret, r.secretFile, r.secretEnv].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of secret, secretFile, secretEnv',
    path: ['secret'],
  });

/** How long a dead holder blocks a blob at most, and how often a live one renews its claim. */
export const LEASE_TTL_MS = 10_000;
export const LEASE_RENEW_MS = 3_000;

export type ReplicationConfig = z.output<typeof replicationSchema>;
