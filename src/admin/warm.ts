/**
 * Warm-up: fills the cache ahead of time through the same parts a client's pull goes through
 * (the routing, the manifest cache, the blob fills with their digest checks), so that a later
 * pull is answered from the cache even with the upstream gone.
 *
 * For an index or manifest list every platform is fetched, or only those asked for; then every
 * config and layer of every image, a few at a time. A blob that is already stored costs one
 * `stat` (and, when the image's route is not linked to it yet, one upstream HEAD, so that the
 * later pull does not ask); one that a client is filling right now is joined, not fetched twice.
 */
import type { Links } from '../access/links.js';
import type { ManifestCache, ManifestResult } from '../manifests/cache.js';
import { OciError, isOciError } from '../errors.js';
import type { MirrorEvents } from '../events/index.js';
import type { Fills } from '../fill/index.js';
import { parseDigest } from '../reference.js';
import type { UpstreamTarget } from '../state.js';
import type { Storage } from '../storage.js';
import type { Routing } from '../upstream/routing.js';
import { headBlob, upstreamBlob } from '../upstream/blob.js';
import { formatPlatform, platformMatches, resolveImage, type Platform } from './image-ref.js';
import { parseManifest, type Descriptor } from '../manifests/parse.js';

/** What warm-up needs of a mirror; a `Mirror` is one. */
export interface WarmDeps {
  routing: Routing;
  manifests: ManifestCache;
  links: Links;
  fills: Fills;
  storage: Storage;
  events: MirrorEvents;
}

export interface WarmOptions {
  /** Only these platforms of an index (`os/arch[/variant]`); every one when absent or empty. */
  platforms?: readonly Platform[];
  /** Blobs fetched at once, per image. Default 3. */
  concurrency?: number;
  onEvent?: (event: WarmEvent) => void;
}

export type WarmEvent =
  | { type: 'start'; image: string }
  | { type: 'manifest'; image: string; digest: string; mediaType: string; platform?: string; cache: ManifestResult['cache'] }
  /** Every blob the image needs is known: how many, and their declared bytes. */
  | { type: 'plan'; image: string; blobs: number; bytes: number }
  /** Bytes of blobs received from the upstream since the last such event. */
  | { type: 'bytes'; image: string; bytes: number }
  | { type: 'blob'; image: string; digest: string; size: number; fetched: boolean }
  | { type: 'done'; image: string; result: WarmResult }
  | { type: 'failed'; image: string; error: string };

export interface WarmResult {
  image: string;
  /** The digest of the manifest the reference resolved to. */
  digest: string;
  mediaType: string;
  /** The platforms warmed, for an index; empty for a single image. */
  platforms: string[];
  manifests: number;
  blobs: number;
  /** Bytes of every config and layer. */
  bytes: number;
  /** Of those, bytes fetched from the upstream now (the rest was cached already). */
  fetched: number;
  durationMs: number;
}

export interface WarmReport {
  results: WarmResult[];
  failures: Array<{ image: string; error: string }>;
}

/** Warms each image in turn; one that fails is reported and the others still go ahead. */
export async function warmImages(deps: WarmDeps, images: readonly string[], options: WarmOptions = {}): Promise<WarmReport> {
  const report: WarmReport = { results: [], failures: [] };
  for (const image of images) {
    try {
      report.results.push(await warmImage(deps, image, options));
    } catch (err) {
      const error = describeError(err);
      report.failures.push({ image, error });
      options.onEvent?.({ type: 'failed', image, error });
    }
  }
  return report;
}

/** Warms one image; rejects with the first thing that failed. */
export async function warmImage(deps: WarmDeps, image: string, options: WarmOptions = {}): Promise<WarmResult> {
  const { platforms = [], concurrency = 3, onEvent = () => {} } = options;
  const started = performance.now();
  onEvent({ type: 'start', image });
  const ref = resolveImage(deps.routing, image);
  const { target } = ref;

  const top =
    ref.reference.kind === 'digest' ? await deps.manifests.byDigest(target, ref.reference.digest) : await deps.manifests.byTag(target, ref.reference.tag);
  const blobs = new Map<string, Descriptor>();
  const warmed: string[] = [];
  let manifests = 0;

  const visit = async (result: ManifestResult, platform: string | undefined, depth: number): Promise<void> => {
    manifests++;
    const { entry, body, cache } = result;
    onEvent({ type: 'manifest', image, digest: entry.digest, mediaType: entry.mediaType, ...(platform ? { platform } : {}), cache });
    deps.events.emit('stored', { digest: entry.digest, kind: 'manifest', size: entry.size });
    const parsed = parseManifest(body);
    if (parsed.kind === 'image') {
      for (const b of parsed.blobs) if (!blobs.has(b.digest)) blobs.set(b.digest, b);
      if (platform) warmed.push(platform);
      return;
    }
    if (depth > 1) throw new OciError('MANIFEST_INVALID', `${entry.digest}: an index nested more than two deep`, { status: 502 });
    const children = platforms.length ? parsed.manifests.filter((m) => platformMatches(m.platform, platforms)) : parsed.manifests;
    if (children.length === 0) {
      const has = parsed.manifests.map((m) => formatPlatform(m.platform)).join(', ') || 'no platforms';
      throw new OciError('MANIFEST_UNKNOWN', `${image} has no manifest for ${platforms.map(formatPlatform).join(', ')} (it has ${has})`);
    }
    for (const child of children) {
      const childResult = await deps.manifests.byDigest(target, parseDigest(child.digest));
      await visit(childResult, formatPlatform(child.platform), depth + 1);
    }
  };
  await visit(top, undefined, 0);

  const needed = [...blobs.values()];
  onEvent({ type: 'plan', image, blobs: needed.length, bytes: needed.reduce((n, b) => n + (b.size ?? 0), 0) });
  let bytes = 0;
  let fetched = 0;
  await eachLimited(needed, concurrency, async (d) => {
    const got = await ensureBlob(deps, target, d, (delta) => onEvent({ type: 'bytes', image, bytes: delta }));
    bytes += got.size;
    if (got.fetched) fetched += got.size;
    onEvent({ type: 'blob', image, digest: d.digest, size: got.size, fetched: got.fetched });
  });

  const result: WarmResult = {
    image,
    digest: top.entry.digest,
    mediaType: top.entry.mediaType,
    platforms: warmed,
    manifests,
    blobs: needed.length,
    bytes,
    fetched,
    durationMs: Math.round(performance.now() - started),
  };
  onEvent({ type: 'done', image, result });
  return result;
}

/** A blob in the store, fetched through the fills (joining one in flight) when it is not there yet. */
async function ensureBlob(
  deps: WarmDeps,
  target: UpstreamTarget,
  d: Descriptor,
  onBytes: (delta: number) => void,
): Promise<{ size: number; fetched: boolean }> {
  const { storage, fills, links, events } = deps;
  const digest = parseDigest(d.digest);
  let info = await storage.blobs.stat(d.digest);
  let fetched = false;
  if (info) {
    await links.confirm(d.digest, target, () => headBlob(target, digest));
  } else {
    const fill = fills.get(d.digest) ?? fills.acquire(digest, upstreamBlob(target, digest, links));
    let reported = 0;
    const report = () => {
      const written = fill.alreadyStored ? 0 : fill.written;
      if (written > reported) onBytes(written - reported);
      reported = Math.max(reported, written);
    };
    const watching = (async () => {
      while (!fill.settled) {
        await fill.changed();
        report();
      }
    })();
    try {
      await fill.done;
    } catch (err) {
      throw new OciError(isOciError(err) ? err.code : 'UNAVAILABLE', `blob ${d.digest}: ${(err as Error).message}`, { cause: err });
    } finally {
      await watching;
    }
    fetched = !fill.alreadyStored;
    info = await storage.blobs.stat(d.digest);
    if (!info) throw new OciError('BLOB_UNKNOWN', `blob ${d.digest} is not in storage after its fill`);
    // A fill joined or relayed from another replica did not ask this route's upstream.
    await links.confirm(d.digest, target, () => headBlob(target, digest));
  }
  if (d.size !== undefined && info.size !== d.size) {
    throw new OciError('SIZE_INVALID', `blob ${d.digest} has ${info.size} bytes; its manifest says ${d.size}`);
  }
  events.emit('stored', { digest: d.digest, kind: 'blob', size: info.size });
  return { size: info.size, fetched };
}

/** Runs `work` on every item, at most `limit` at a time; after a failure starts nothing new and rejects with it. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.err;
}

/** `CODE: message` for an OciError, the message otherwise. */
export function describeError(err: unknown): string {
  if (isOciError(err)) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
