/**
 * The Keyv adapter: metadata, and blobs in bounded chunks, in any Keyv store (in-memory,
 * @keyv/redis, SQLite, Postgres…). Keyv's own API is spoken in table.ts only.
 *
 * From a URL (`memory` or `redis://…`), every store gets its own namespaces under
 * `namespace` (default `oci-mirror`): `<ns>-meta`, `<ns>-blobs` (records and upload
 * markers) and `<ns>-chunks`; on Redis the keys read `<ns>-meta::meta:<key>` and so on.
 * `memory` keeps everything in this process and loses it on exit.
 *
 * Run `storage.blobs.recover()` once at start-up, before serving.
 */
import type { Storage } from '../../src/storage.js';
import { blobsOver, type KeyvBlobStore, type KeyvBlobStoreOptions } from './blobs.js';
import { openKeyvs, sharedClose, type KeyvConnectOptions } from './connect.js';
import { metadataOver, type KeyvMetadataStore } from './metadata.js';

export { keyvBlobStore, type KeyvBlobStore, type KeyvBlobStoreOptions, type KeyvBlobTargets } from './blobs.js';
export { DEFAULT_NAMESPACE, isKeyvUrl, type KeyvConnectOptions } from './connect.js';
export { keyvMetadataStore, type KeyvMetadataStore } from './metadata.js';

export type KeyvStorageOptions = KeyvConnectOptions & KeyvBlobStoreOptions;

/** Blobs and metadata over one connection, closed once both stores are. */
export function keyvStorage(options: KeyvStorageOptions): Storage & { blobs: KeyvBlobStore; meta: KeyvMetadataStore } {
  const { keyvs, close } = openKeyvs(options, ['meta', 'blobs', 'chunks']);
  const closeOne = sharedClose(close, 2);
  return {
    blobs: blobsOver({ records: keyvs.blobs, chunks: keyvs.chunks }, options, closeOne),
    meta: metadataOver(keyvs.meta, closeOne),
  };
}
