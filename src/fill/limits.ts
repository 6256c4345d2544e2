/**
 * What a fill may take. A blob larger than `maxBlobBytes` is not fetched, and a fill starts
 * spooling only when its spool's file system has room for it above `reserveBytes`. Both are
 * decided before the client's `200` goes out, while an error can still be an error: a disk
 * that fills mid-transfer looks to the client like a network fault, which it retries at the
 * cost of the whole layer again.
 */
import { statfs } from 'node:fs/promises';
import { formatBytes } from '../admin/format.js';
import { OciError } from '../errors.js';

export type FillRefusalReason = 'too_large' | 'no_space';

/** A fill the limits stopped; an OciError like any other, that also says which limit. */
export class FillRefusal extends OciError {
  constructor(
    readonly reason: FillRefusalReason,
    ...args: ConstructorParameters<typeof OciError>
  ) {
    super(...args);
  }
}

export interface FillLimitsOptions {
  /** The largest blob a fill fetches, bytes. */
  maxBlobBytes?: number;
  /** Space fills leave free on their spool's file system, bytes. */
  reserveBytes?: number;
  /** Bytes free on the file system holding `dir`; by default statfs's count for unprivileged users (root's reserve aside). */
  freeBytes?: (dir: string) => Promise<number>;
}

export const FILL_LIMITS_DEFAULTS = {
  maxBlobBytes: 20 * 1024 ** 3,
  reserveBytes: 1024 ** 3,
} as const satisfies FillLimitsOptions;

export interface FillLimits {
  /**
   * Admits a fill that is about to spool `declared` bytes (undefined: the upstream did not say)
   * into `dir`, or throws a FillRefusal. Until `release` is called, the admitted bytes not yet
   * `written()` count as taken for every later admission: two large fills that start together
   * cannot both pass on the same free space.
   */
  admit(digest: string, dir: string, declared: number | undefined, written: () => number): Promise<() => void>;
  /** Throws the FillRefusal that `admit` would for a blob declared at `declared` bytes over `maxBlobBytes`. */
  checkDeclared(digest: string, declared: number | undefined): void;
  /** Throws a FillRefusal once a body without a declared size passes `maxBlobBytes`. */
  checkReceived(digest: string, received: number): void;
}

export function createFillLimits(options: FillLimitsOptions = {}): FillLimits {
  const { maxBlobBytes = FILL_LIMITS_DEFAULTS.maxBlobBytes, reserveBytes = FILL_LIMITS_DEFAULTS.reserveBytes, freeBytes = statfsFree } = options;
  // One ledger for every spool directory: a mirror's fills share one, and counting another
  // directory's promises against it can only refuse early, never fill a disk.
  const admitted = new Set<{ declared: number; written: () => number }>();
  const promised = () => {
    let sum = 0;
    for (const a of admitted) sum += Math.max(0, a.declared - a.written());
    return sum;
  };

  const checkDeclared = (digest: string, declared: number | undefined): void => {
    if (declared !== undefined && declared > maxBlobBytes) {
      // DENIED, a 403: a policy of this mirror that no retry changes. Docker (DoNotRetry) and
      // containers/image (skopeo, podman: not retryable) give up at once, where SIZE_INVALID or
      // a 5xx would make them fetch the headers again and again; containerd's fallback to the
      // next host happens only on a 404, which would claim the blob does not exist.
      throw new FillRefusal(
        'too_large',
        'DENIED',
        `blob ${digest} is ${formatBytes(declared)}, larger than this mirror fetches (${formatBytes(maxBlobBytes)})`,
      );
    }
  };

  return {
    async admit(digest, dir, declared, written) {
      checkDeclared(digest, declared);
      // A file system that cannot say is no reason to refuse: a full one still fails the write.
      const free = await freeBytes(dir).catch(() => Infinity);
      const taken = promised();
      const needed = declared ?? 0;
      if (free - taken - reserveBytes < needed) {
        const room = Math.max(0, free - taken - reserveBytes);
        // 507 Insufficient Storage: the server's own condition, and one that passes (eviction,
        // fills finishing), so clients may retry; UNAVAILABLE is the OCI code clients retry.
        throw new FillRefusal(
          'no_space',
          'UNAVAILABLE',
          declared === undefined
            ? `the mirror is out of space: less than its ${formatBytes(reserveBytes)} reserve is free for blob ${digest}`
            : `the mirror is out of space: blob ${digest} needs ${formatBytes(declared)}, ${formatBytes(room)} is free beyond its reserve and the fills in flight`,
          { status: 507 },
        );
      }
      const entry = { declared: needed, written };
      admitted.add(entry);
      return () => void admitted.delete(entry);
    },
    checkDeclared,
    checkReceived(digest, received) {
      if (received > maxBlobBytes) {
        throw new FillRefusal('too_large', 'DENIED', `blob ${digest} passed ${formatBytes(maxBlobBytes)} without a declared size, more than this mirror fetches`);
      }
    },
  };
}

async function statfsFree(dir: string): Promise<number> {
  const { bavail, bsize } = await statfs(dir);
  return bavail * bsize;
}
