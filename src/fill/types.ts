/** The contract between a fill and whoever starts one: where its bytes come from, and its states. */
import type { Readable } from 'node:stream';
import type { BlobStore } from '../storage.js';
import type { FillLimits } from './limits.js';

export interface FillSourceResponse {
  /** Declared size, when the upstream sent a Content-Length. */
  size: number | undefined;
  body: Readable;
  /**
   * The bytes come from another replica's fill, which commits them to the shared store: this
   * fill only verifies them, and commits only if the blob is still missing once verified.
   */
  relayed?: boolean;
  /** Work the source started that must succeed before the blob is committed (the route's link); its failure fails the fill. */
  beforeCommit?: Promise<unknown>;
}

/** Opens the upstream body; rejects with an OciError for an upstream that answers with an error. */
export type FillSource = (signal: AbortSignal) => Promise<FillSourceResponse>;

export type FillState = 'starting' | 'running' | 'verified' | 'committed' | 'failed';

export interface FillOptions {
  store: BlobStore;
  /** Where to spool when the store has no spool capability of its own. */
  spoolDir: string;
  /** Shutdown of the owner. */
  signal: AbortSignal;
  /** The longest this fill may take, ms. */
  timeout: number;
  /** The largest blob, and the free space a fill must leave; shared by the fills of one registry. */
  limits: FillLimits;
}
