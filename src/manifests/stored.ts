import { readCapped } from '../http.js';
import type { Storage } from '../storage.js';
import { manifestKey } from './keys.js';

/** What the manifest cache records beside a manifest's bytes, under `manifestKey(digest)`. */
export interface ManifestRecord {
  mediaType: string;
  size: number;
}

/**
 * A cached manifest, its bytes capped: undefined when its record or its bytes are gone. The
 * one read of a stored manifest, for the cache and for everything that walks what is cached.
 */
export async function readStoredManifest(storage: Storage, digest: string, maxBytes: number): Promise<{ mediaType: string; body: Buffer } | undefined> {
  const record = await storage.meta.get<ManifestRecord>(manifestKey(digest));
  if (!record) return undefined;
  const held = storage.blobs.held?.(digest);
  if (held) return { mediaType: record.mediaType, body: held };
  const stream = await storage.blobs.read(digest);
  return stream ? { mediaType: record.mediaType, body: await readCapped(stream, maxBytes, 'stored manifest') } : undefined;
}
