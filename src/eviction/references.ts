/**
 * What a manifest keeps alive: its config and layers, an index's child manifests, an artifact's
 * blobs, a schema 1 manifest's layers. Not its `subject`: a signature or SBOM that points at an
 * image must not keep the image cached.
 */
import { parseDigest } from '../reference.js';

export function manifestReferences(body: Buffer): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return [];
  }
  if (typeof doc !== 'object' || doc === null) return [];
  const m = doc as Record<string, unknown>;
  const refs = new Set<string>();
  const add = (digest: unknown) => {
    if (typeof digest === 'string' && isValidDigest(digest)) refs.add(digest);
  };
  const each = (list: unknown, key: string) => {
    if (Array.isArray(list)) for (const d of list) add((d as Record<string, unknown> | null)?.[key]);
  };
  add((m.config as Record<string, unknown> | null | undefined)?.digest);
  each(m.layers, 'digest');
  each(m.manifests, 'digest');
  each(m.blobs, 'digest');
  each(m.fsLayers, 'blobSum');
  return [...refs];
}

export function isValidDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}
