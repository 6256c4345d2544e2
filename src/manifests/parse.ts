/**
 * What a manifest is made of, the one parser of it: an index's child manifests (with their
 * platforms), an image's config and layers, with the sizes its descriptors declare. Warm-up,
 * listing and purge read it whole; eviction only needs what it keeps alive.
 */
import { isValidDigest } from '../reference.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

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

/**
 * What a manifest keeps alive: its config and layers, an index's child manifests, an artifact's
 * blobs, a schema 1 manifest's layers. Not its `subject`: a signature or SBOM that points at an
 * image must not keep the image cached.
 */
export function manifestReferences(body: Buffer): string[] {
  const parsed = parseManifest(body);
  return (parsed.kind === 'index' ? parsed.manifests : parsed.blobs).map((d) => d.digest);
}
