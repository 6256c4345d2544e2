/**
 * The seam through which mirror replicas agree on who fetches a blob. Without a lease every
 * process fills on its own (one process: the in-memory map already de-duplicates). With one,
 * the replica that claims a digest fetches it from the upstream and the others stream it from
 * that replica (see `coordinatedSource`).
 */

export type LeaseClaim =
  | {
      owner: true;
      /** Gives the lease up (compare-and-delete: never someone else's). Safe to call twice. */
      release(): Promise<void>;
    }
  | {
      owner: false;
      /** The holder's advertised base URL, where its fills can be streamed from. */
      holder: string;
      /** This claim of the holder's (a holder that fails and claims again gets a new one). */
      id: string;
    };

export interface FillLease {
  /** Claims `digest` for this process, or says who holds it. Renews on its own until released. */
  claim(digest: string): Promise<LeaseClaim>;
  /** The id of the current claim, or undefined when nobody holds the digest. */
  current(digest: string): Promise<string | undefined>;
  /** Lease lifetime, ms: how long a dead holder blocks a digest at most. */
  readonly ttlMs: number;
  close(): Promise<void>;
}
