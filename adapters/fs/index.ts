/**
 * The filesystem adapter, the embedded default: blobs and metadata under one root directory.
 *
 *   <root>/blobs/<alg>/<first 2 hex>/<hex>   committed blobs
 *   <root>/meta/…                            metadata records (see keys.ts)
 *   <root>/tmp/                              in-progress writes; tmp/spool/ for fills
 *
 * Run `storage.blobs.recover()` once at start-up, before serving; with `recoverOlderThan`, also
 * while others write to the store (it then leaves what they are writing alone).
 */
import type { Storage } from '../../src/storage.js';
import { fsBlobStore, type FsBlobStore } from './blobs.js';
import { fsMetadataStore } from './metadata.js';

export { fsBlobStore, type FsBlobStore, type FsBlobStoreOptions } from './blobs.js';
export { fsMetadataStore, type FsMetadataStoreOptions } from './metadata.js';

export interface FsStorageOptions {
  path: string;
  /** Applies to blobs and records alike (default true). */
  fsync?: boolean;
  /** See FsBlobStoreOptions: tmp/ holds the records' unfinished writes too. */
  recoverOlderThan?: number;
}

export function fsStorage(options: FsStorageOptions): Storage & { blobs: FsBlobStore } {
  return { blobs: fsBlobStore(options), meta: fsMetadataStore(options) };
}
