/**
 * `oci-mirror ls`: every cached tag with the digest it maps to, what the image weighs in the
 * cache, whether all of it is there (every platform's manifest, config and layers), and when
 * it was last used.
 */
import type { Storage } from '../storage.js';
import { formatPlatform } from './image-ref.js';
import { parseManifest, type Descriptor } from '../manifests/parse.js';
import { readStoredManifest } from '../manifests/stored.js';
import { accessTimes, listTags } from './records.js';

export interface ListDeps {
  storage: Storage;
  maxManifestBytes: number;
}

export interface CachedImage {
  upstream: string;
  repository: string;
  tag: string;
  /** `<upstream>/<repository>:<tag>` */
  ref: string;
  digest: string;
  mediaType: string;
  /** For an index, the platforms of its child manifests that are cached. */
  platforms: string[];
  /** Bytes in the cache: manifests, configs and layers, each once. */
  size: number;
  manifests: { cached: number; total: number };
  blobs: { cached: number; total: number };
  /** Every manifest, config and layer is cached: a pull needs no upstream. */
  complete: boolean;
  /** ms since the epoch: the last pull eviction recorded, or else the last time the upstream confirmed the tag. */
  lastAccess: number;
}

export async function listCached(deps: ListDeps): Promise<CachedImage[]> {
  const { storage, maxManifestBytes } = deps;
  const [tags, times] = await Promise.all([listTags(storage.meta), accessTimes(storage.meta)]);
  const bodies = new Map<string, Promise<Buffer | undefined>>();
  const sizes = new Map<string, Promise<number | undefined>>();
  const manifest = (digest: string) => memo(bodies, digest, () => readStoredManifest(storage, digest, maxManifestBytes).then((m) => m?.body, () => undefined));
  const blobSize = (digest: string) => memo(sizes, digest, async () => (await storage.blobs.stat(digest))?.size);

  const out: CachedImage[] = [];
  for (const t of tags) {
    const seen = new Set<string>();
    const image: CachedImage = {
      upstream: t.upstream,
      repository: t.repository,
      tag: t.tag,
      ref: `${t.upstream}/${t.repository}:${t.tag}`,
      digest: t.digest,
      mediaType: t.mediaType,
      platforms: [],
      size: 0,
      manifests: { cached: 0, total: 0 },
      blobs: { cached: 0, total: 0 },
      complete: false,
      lastAccess: Math.max(t.checkedAt, times.get(t.digest) ?? 0),
    };
    const visit = async (d: Descriptor, depth: number): Promise<void> => {
      if (seen.has(d.digest)) return;
      seen.add(d.digest);
      image.manifests.total++;
      const body = await manifest(d.digest);
      if (!body) return;
      image.manifests.cached++;
      image.size += body.length;
      image.lastAccess = Math.max(image.lastAccess, times.get(d.digest) ?? 0);
      const parsed = parseManifest(body);
      if (parsed.kind === 'index') {
        if (depth > 1) return;
        for (const child of parsed.manifests) {
          const before = image.manifests.cached;
          await visit(child, depth + 1);
          if (image.manifests.cached > before) image.platforms.push(formatPlatform(child.platform));
        }
        return;
      }
      for (const b of parsed.blobs) {
        if (seen.has(b.digest)) continue;
        seen.add(b.digest);
        image.blobs.total++;
        const size = await blobSize(b.digest);
        if (size === undefined) continue;
        image.blobs.cached++;
        image.size += size;
      }
    };
    await visit({ digest: t.digest }, 0);
    image.complete = image.manifests.cached === image.manifests.total && image.blobs.cached === image.blobs.total;
    out.push(image);
  }
  return out.sort((a, b) => a.ref.localeCompare(b.ref));
}

function memo<T>(map: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let p = map.get(key);
  if (!p) map.set(key, (p = load()));
  return p;
}
