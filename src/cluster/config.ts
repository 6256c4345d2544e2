/**
 * The `workers` key: how many processes serve the one listening port (`auto`: one per core).
 * One, the default, is the single process as it always was. Several share the storage, so
 * storage private to one process cannot serve them, and they coordinate fills through the
 * primary process rather than through `replication`'s Redis.
 */
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { StorageConfig } from '../storage-config.js';

/** More processes than this on one host is a typo, not a plan. */
const MAX_WORKERS = 256;

export const WORKERS_EXPECTED = `must be "auto" (one per core) or a whole number from 1 to ${MAX_WORKERS}`;

export const workersSchema = z.union(
  [z.literal('auto'), z.number().int({ error: WORKERS_EXPECTED }).min(1, { error: WORKERS_EXPECTED }).max(MAX_WORKERS, { error: WORKERS_EXPECTED })],
  { error: WORKERS_EXPECTED },
);

export type Workers = z.output<typeof workersSchema>;

export function workerCount(workers: Workers): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/** `--workers 2` or `--workers auto`, as the config key takes it. */
export function parseWorkersFlag(value: string): Workers | undefined {
  const parsed = workersSchema.safeParse(/^\d+$/.test(value) ? Number(value) : value);
  return parsed.success ? parsed.data : undefined;
}

export interface WorkersProblem {
  path: string;
  message: string;
}

/** What the rest of the config rules out when several processes serve it. */
export function workersProblems(config: { workers: Workers; storage: StorageConfig; replication?: unknown }): WorkersProblem[] {
  const count = workerCount(config.workers);
  if (count === 1) return [];
  const problems: WorkersProblem[] = [];
  const { storage } = config;
  const inMemory: Array<[string, { type: string; url?: string }]> =
    storage.type === 'split' ? [['storage.blobs', storage.blobs], ['storage.meta', storage.meta]] : [['storage', storage]];
  for (const [key, part] of inMemory) {
    if (part.type === 'keyv' && part.url === 'memory') {
      problems.push({ path: `${key}.url`, message: `"memory" lives in one process; workers: ${count} need storage they all share (fs, Redis, S3), or workers: 1` });
    }
  }
  if (config.replication !== undefined) {
    problems.push({ path: 'workers', message: `${count} workers cannot be combined with replication yet: run one process per replica (workers: 1)` });
  }
  return problems;
}
