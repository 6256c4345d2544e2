/**
 * Removing one cached digest, the same way for eviction and purge: the manifest record first
 * (from then on the manifest is simply not cached), then the bytes, then what only described
 * them (its access record and the routes linked to it).
 */
import { forgetLinks } from '../access/links.js';
import type { ContentKind } from '../events/index.js';
import { manifestKey } from '../manifests/keys.js';
import type { Storage } from '../storage.js';
import { ACCESS_PREFIX } from './access.js';

export async function removeContent(storage: Storage, digest: string, kind: ContentKind): Promise<void> {
  if (kind === 'manifest') await storage.meta.delete(manifestKey(digest));
  await storage.blobs.delete(digest);
  await storage.meta.delete(ACCESS_PREFIX + digest);
  await forgetLinks(storage.meta, digest);
}
