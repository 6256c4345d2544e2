/**
 * What a manifest is made of, for warm-up, listing and purge: an index's child manifests
 * (with their platforms), an image's config and layers, with the sizes its descriptors declare.
 */
import { manifestKey } from '../manifests/cache.js';
import { readCapped } from '../http.js';
import { isValidDigest } from '../eviction/references.js';
import type { Storage } from '../storage.js';
import type { Platform } from './image-ref.js';

export interface Descriptor {
  digest: string;
  /** As the descriptor declares it; schema 1 manifests declare none. */
  size?: number;
  mediaType?: string;
  platform?: Partial<Platform>;
}

export type ParsedManifest =
  | { kind: 'index'; manifests: Descriptor[] }
  | { kind: 'image'; blobs: Descriptor[] };

/** Layers that registries do not hold (Windows base layers): nobody pulls them from a mirror. */
const FOREIGN = /\.foreign\./;

export function parseManifest(body: Buffer): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { kind: 'image', blobs: [] };
    doc = parsed as Record<string, unknown>;
  } catch {
    return { kind: 'image', blobs: [] };
  }
  if (Array.isArray(doc.manifests)) return { kind: 'index', manifests: descriptors(doc.manifests, 'digest') };
  const blobs = [
    ...descriptors([doc.config], 'digest'),
    ...descriptors(doc.layers, 'digest').filter((d) => !FOREIGN.test(d.mediaType ?? '')),
    ...descriptors(doc.blobs, 'digest'),
    ...descriptors(doc.fsLayers, 'blobSum'),
  ];
  const seen = new Set<string>();
  return { kind: 'image', blobs: blobs.filter((b) => !seen.has(b.digest) && seen.add(b.digest)) };
}

function descriptors(list: unknown, key: string): Descriptor[] {
  if (!Array.isArray(list)) return [];
  const out: Descriptor[] = [];
  for (const item of list) {
    if (typeof item !== 'object' || item === null) continue;
    const d = item as Record<string, unknown>;
    const digest = d[key];
    if (typeof digest !== 'string' || !isValidDigest(digest)) continue;
    out.push({
      digest,
      ...(typeof d.size === 'number' && Number.isSafeInteger(d.size) && d.size >= 0 ? { size: d.size } : {}),
      ...(typeof d.mediaType === 'string' ? { mediaType: d.mediaType } : {}),
      ...(typeof d.platform === 'object' && d.platform !== null ? { platform: platformOf(d.platform as Record<string, unknown>) } : {}),
    });
  }
  return out;
}

function platformOf(p: Record<string, unknown>): Partial<Platform> {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return { os: str(p.os), architecture: str(p.architecture), variant: str(p.variant) };
}

/** A cached manifest's bytes: undefined when its record or its bytes are gone. */
export async function readStoredManifest(storage: Storage, digest: string, maxBytes: number): Promise<Buffer | undefined> {
  if (!(await storage.meta.get(manifestKey(digest)))) return undefined;
  const stream = await storage.blobs.read(digest);
  return stream ? readCapped(stream, maxBytes, 'stored manifest') : undefined;
}
