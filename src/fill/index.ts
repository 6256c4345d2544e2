/**
 * The registry of fills in flight, held in a factory's closure (never module-global: two
 * mirrors in one process must not share it). Every request for a blob that is being filled
 * joins that fill, so one upstream GET serves any number of clients.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OciError } from '../errors.js';
import type { Digest } from '../reference.js';
import type { BlobStore } from '../storage.js';
import { coordinatedSource, type Coordination } from './coordinated.js';
import { Fill, type FillSource } from './fill.js';
import { createFillLimits, type FillLimitsOptions } from './limits.js';

export { Fill, type FillSource, type FillSourceResponse, type FillState } from './fill.js';
export { coordinatedSource, type Coordination, type FillRelay } from './coordinated.js';
export type { FillLease, LeaseClaim } from './lease.js';
export { FILL_LIMITS_DEFAULTS, FillRefusal, type FillLimitsOptions, type FillRefusalReason } from './limits.js';

/** `maxBlobBytes` and `reserveBytes` default to FILL_LIMITS_DEFAULTS (20 GiB, 1 GiB). */
export interface FillsOptions extends FillLimitsOptions {
  store: BlobStore;
  /** The longest one fill may take, ms. */
  timeout?: number;
  /** Spool directory for stores without a local spool of their own. */
  spoolDir?: string;
  /** Observes every fill that starts (metrics, logs). */
  onFill?: (fill: Fill) => void;
  /** Replicas sharing a store: a lease picks the one that fetches, the others relay its fill. None: every fill fetches. */
  coordination?: Coordination;
}

export interface Fills {
  /** The fill in flight for this digest, if any. */
  get(digest: string): Fill | undefined;
  /** Every fill in flight, for a status page; read them, never drive them. */
  list(): Fill[];
  /** Joins the fill in flight for this digest, or starts one from `source`. */
  acquire(digest: Digest, source: FillSource): Fill;
  /**
   * Throws the FillRefusal a fill would answer with, before any byte, for a blob the upstream
   * declares at `declared` bytes (over `maxBlobBytes`): a HEAD asks this instead of starting one.
   */
  checkDeclared(digest: string, declared: number | undefined): void;
  /** Fills in flight. */
  readonly size: number;
  /** Waits up to `graceMs` for fills in flight to finish, then aborts the rest. */
  drain(graceMs: number): Promise<void>;
}

export function createFills(options: FillsOptions): Fills {
  const { store, timeout = 3_600_000, onFill, coordination } = options;
  const spoolDir = options.spoolDir ?? join(tmpdir(), 'koa-oci-mirror-spool');
  const limits = createFillLimits(options);
  const inFlight = new Map<string, Fill>();
  const shutdown = new AbortController();

  return {
    get: (digest) => inFlight.get(digest),
    list: () => [...inFlight.values()],
    get size() {
      return inFlight.size;
    },
    acquire(digest, source) {
      const current = inFlight.get(digest.value);
      if (current) return current;
      if (shutdown.signal.aborted) throw new OciError('UNAVAILABLE', 'mirror is shutting down');
      const coordinated = coordination && coordinatedSource(digest.value, source, coordination);
      const fill = new Fill(digest, coordinated?.source ?? source, { store, spoolDir, signal: shutdown.signal, timeout, limits });
      inFlight.set(digest.value, fill);
      const forget = () => {
        if (inFlight.get(digest.value) === fill) inFlight.delete(digest.value);
        // After the commit (or the failure): a replica waiting on the lease then finds the blob stored.
        coordinated?.release().catch(() => {});
      };
      fill.done.then(forget, forget);
      onFill?.(fill);
      return fill;
    },
    checkDeclared: (digest, declared) => limits.checkDeclared(digest, declared),
    async drain(graceMs) {
      const pending = [...inFlight.values()].map((f) => f.done.catch(() => {}));
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        timer.unref();
      });
      await Promise.race([Promise.all(pending), grace]);
      clearTimeout(timer);
      shutdown.abort(new OciError('UNAVAILABLE', 'mirror is shutting down'));
      await Promise.all(pending);
    },
  };
}
