/**
 * `oci-mirror purge <repository[:tag]>`: forgets the tags, then removes what only they kept,
 * by eviction's reference rules (`manifestReferences`): a manifest goes when no remaining tag
 * points at it and no remaining manifest references it; an index's child manifests and an
 * image's config and layers follow on the same terms. A layer that another cached image
 * shares stays, and so does anything being served or filled right now.
 *
 * Manifests pulled only by digest have no repository on record; they are left alone unless
 * a purged index references them.
 */
import { MANIFEST_PREFIX } from '../manifests/keys.js';
import type { Routing } from '../upstream/routing.js';
import { OciError } from '../errors.js';
import type { ContentKind, MirrorEvents } from '../events/index.js';
import { manifestReferences } from '../manifests/parse.js';
import { readStoredManifest } from '../manifests/stored.js';
import { removeContent } from '../eviction/remove.js';
import type { Storage } from '../storage.js';
import { resolveName, splitReference } from './image-ref.js';
import { listTags } from './records.js';

export interface PurgeDeps {
  storage: Storage;
  routing: Routing;
  events: MirrorEvents;
  maxManifestBytes: number;
  /** Being served or filled: never removed. */
  isPinned?: (digest: string) => boolean;
}

export interface PurgeResult {
  /** The tags removed, as `<upstream>/<repository>:<tag>`. */
  tags: string[];
  manifests: number;
  blobs: number;
  /** Bytes of the manifests and blobs removed. */
  bytes: number;
  /** Manifests and blobs of the purged images left in place: another image needs them, or they are in use. */
  kept: number;
}

export async function purge(deps: PurgeDeps, text: string): Promise<PurgeResult> {
  const { storage, events, isPinned = () => false } = deps;
  const { name, tag, digest } = splitReference(text.trim());
  if (digest !== undefined) throw new OciError('UNSUPPORTED', 'purge takes repository[:tag], not a digest', { status: 400 });
  // Purging is how a repository denied after it was cached leaves the cache: filters do not apply.
  const target = resolveName(deps.routing, name, { filtered: false });
  const upstream = target.upstream.name;

  const tags = await listTags(storage.meta);
  const purged = tags.filter((t) => t.upstream === upstream && t.repository === target.repository && (tag === undefined || t.tag === tag));
  if (purged.length === 0) {
    throw new OciError('NAME_UNKNOWN', `nothing is cached for ${upstream}/${target.repository}${tag === undefined ? '' : `:${tag}`}`, { status: 404 });
  }
  // The tags go first: from then on they are simply not cached, whatever follows.
  for (const t of purged) await storage.meta.delete(t.key);
  const tagged = new Set(tags.filter((t) => !purged.includes(t)).map((t) => t.digest));

  const graph = await manifestGraph(deps);
  const referrers = new Map<string, Set<string>>();
  for (const [m, refs] of graph) for (const r of refs) (referrers.get(r) ?? referrers.set(r, new Set()).get(r)!).add(m);

  // What goes: manifests first, to a fixed point, since an index's child may be shared with a kept index.
  const gone = new Set<string>();
  const considered = new Set(purged.map((t) => t.digest));
  for (let changed = true; changed; ) {
    changed = false;
    for (const d of considered) {
      if (gone.has(d) || !graph.has(d) || tagged.has(d) || isPinned(d)) continue;
      if ([...(referrers.get(d) ?? [])].some((m) => !gone.has(m))) continue;
      gone.add(d);
      changed = true;
      for (const r of graph.get(d)!) considered.add(r);
    }
  }
  const result: PurgeResult = { tags: purged.map((t) => `${t.upstream}/${t.repository}:${t.tag}`), manifests: 0, blobs: 0, bytes: 0, kept: 0 };
  const remove = async (d: string, kind: ContentKind, size: number): Promise<void> => {
    await removeContent(storage, d, kind);
    result[kind === 'manifest' ? 'manifests' : 'blobs']++;
    result.bytes += size;
    events.emit('eviction', { digest: d, kind, bytes: size, reason: 'purge' });
  };
  for (const d of considered) {
    const info = await storage.blobs.stat(d);
    if (!info) continue;
    if (graph.has(d)) {
      if (gone.has(d)) await remove(d, 'manifest', info.size);
      else result.kept++;
    } else if (!isPinned(d) && [...(referrers.get(d) ?? [])].every((m) => gone.has(m))) {
      await remove(d, 'blob', info.size);
    } else {
      result.kept++;
    }
  }
  return result;
}

/** Every cached manifest and what it references; one that cannot be read references nothing, as in eviction. */
async function manifestGraph({ storage, maxManifestBytes }: PurgeDeps): Promise<Map<string, readonly string[]>> {
  const graph = new Map<string, readonly string[]>();
  for await (const [key] of storage.meta.list(MANIFEST_PREFIX)) {
    const digest = key.slice(MANIFEST_PREFIX.length);
    let refs: readonly string[] = [];
    try {
      const stored = await readStoredManifest(storage, digest, maxManifestBytes);
      if (stored) refs = manifestReferences(stored.body);
    } catch {
      refs = [];
    }
    graph.set(digest, refs);
  }
  return graph;
}
