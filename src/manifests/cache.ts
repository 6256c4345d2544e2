/**
 * Manifest caching rules: the domain behind the manifestCache middleware, also used by warm-up
 * and prefetch.
 *
 * - By digest: immutable. Served from storage; fetched once and verified against the digest
 *   before it is stored or served.
 * - By tag: the tag maps to a digest for `tagTtl`; after that one upstream HEAD revalidates
 *   it (Docker Hub does not count HEADs against its rate limit) and the body is fetched only
 *   when the digest changed. When the upstream is down or overloaded a cached tag is served
 *   stale; an upstream 404 is passed through and forgets the tag.
 * - A tag the upstream does not have: with `negativeTtl`, its 404 is remembered that long per
 *   (upstream, repository, tag) and answered without asking again, unless the tag is cached.
 */
import { Readable } from 'node:stream';
import { Links } from '../access/links.js';
import type { CacheResult } from '../events/index.js';
import { DEFAULT_MAX_MANIFEST_BYTES, manifestKey, tagKey } from './keys.js';
import { Misses } from './misses.js';
import { readStoredManifest, type ManifestRecord } from './stored.js';
import { digestOf } from '../digest.js';
import { OciError, isOciError } from '../errors.js';
import { discard, header, readCapped } from '../http.js';
import { baseMediaType, declaredMediaType, MANIFEST_ACCEPT, MediaTypes } from '../media-types.js';
import { parseDigest, type Digest, type DigestAlgorithm } from '../reference.js';
import type { UpstreamTarget } from '../state.js';
import type { BlobStore, MetadataStore } from '../storage.js';
import type { UpstreamResponse } from '../upstream/types.js';
import { isTransient, upstreamError } from '../upstream/errors.js';
import { digestCandidates, firstAnswer } from '../upstream/fallback.js';

export interface ManifestEntry {
  digest: string;
  mediaType: string;
  size: number;
}


export interface ManifestResult {
  entry: ManifestEntry;
  body: Buffer;
  cache: Exclude<CacheResult, 'JOIN'>;
}

interface TagRecord extends ManifestEntry {
  /** When the upstream last confirmed this mapping (ms since the epoch). */
  checkedAt: number;
}

export interface ManifestCacheOptions {
  blobs: BlobStore;
  meta: MetadataStore;
  /** How long a tag is trusted without asking the upstream, ms. */
  tagTtl?: number;
  /** How long an upstream 404 for a tag is answered without asking again, ms; 0 (the default): not at all. */
  negativeTtl?: number;
  maxManifestBytes?: number;
  /** Which routes may serve which cached manifests; one over `meta` when absent. */
  links?: Links;
  now?: () => number;
}


export class ManifestCache {
  private readonly blobs: BlobStore;
  private readonly meta: MetadataStore;
  private readonly tagTtl: number;
  private readonly max: number;
  private readonly now: () => number;
  private readonly links: Links;
  private readonly misses: Misses;
  /** Concurrent misses for one manifest share one upstream request. */
  private readonly inFlight = new Map<string, Promise<{ entry: ManifestEntry; body: Buffer }>>();

  constructor(options: ManifestCacheOptions) {
    this.blobs = options.blobs;
    this.meta = options.meta;
    this.tagTtl = options.tagTtl ?? 300_000;
    this.max = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
    this.now = options.now ?? Date.now;
    this.links = options.links ?? new Links(options.meta);
    this.misses = new Misses(options.negativeTtl ?? 0, this.now);
  }

  async byDigest(target: UpstreamTarget, digest: Digest): Promise<ManifestResult> {
    const stored = await this.stored(digest.value);
    if (stored) {
      // Held bytes are served through this route only once its upstream has them too.
      await this.links.confirm(digest.value, target, () => this.confirmOnce(target, digest));
      return answer(stored, 'HIT');
    }
    const fetched = await this.fetch(target, digest.value, digest);
    return answer(fetched, 'MISS');
  }

  async byTag(target: UpstreamTarget, tag: string): Promise<ManifestResult> {
    const { tagFallbacks = [] } = target;
    if (tagFallbacks.length === 0) return this.byTagOn(target, tag);
    // Each upstream keeps its own tag records: a fallback's answer is cached as that upstream's.
    const result = await firstAnswer([target, ...tagFallbacks], (t) => this.byTagOn(t, tag));
    // The config lets this name's tags resolve there, so what they resolve to is this route's too.
    await this.links.add(result.entry.digest, target);
    return result;
  }

  private async byTagOn(target: UpstreamTarget, tag: string): Promise<ManifestResult> {
    const key = tagKey(target, tag);
    const record = await this.meta.get<TagRecord>(key);
    const cached = record ? await this.stored(record.digest) : undefined;
    if (record && cached && this.now() - record.checkedAt < this.tagTtl) return answer(cached, 'HIT');
    // A 404 given to a client's own credentials may be about that client: not for the others.
    const remember = !target.credentials;
    if (!record && remember && this.misses.has(key)) {
      throw new OciError('MANIFEST_UNKNOWN', `${tag}: not found upstream moments ago`, { headers: { 'X-Mirror-Cache': 'NEGATIVE' } });
    }

    let upstreamDigest: string | undefined;
    try {
      upstreamDigest = await this.headDigest(target, tag);
    } catch (err) {
      if (cached && isTransient(err)) return answer(cached, 'STALE');
      if (isOciError(err) && err.code === 'MANIFEST_UNKNOWN') {
        await this.meta.delete(key);
        if (remember) this.misses.add(key);
      }
      throw err;
    }
    this.misses.delete(key);

    if (cached && upstreamDigest === cached.entry.digest) {
      await this.links.add(cached.entry.digest, target);
      await this.meta.set(key, tagRecord(cached.entry, this.now()));
      return answer(cached, 'REVALIDATED');
    }
    // Another tag may already have brought this digest in.
    const known = upstreamDigest ? await this.stored(upstreamDigest) : undefined;
    let result: { entry: ManifestEntry; body: Buffer };
    let status: CacheResult = 'MISS';
    if (known) {
      await this.links.add(known.entry.digest, target);
      result = known;
      status = 'REVALIDATED';
    } else {
      try {
        result = await this.fetch(target, tag, upstreamDigest ? safeDigest(upstreamDigest) : undefined);
      } catch (err) {
        if (cached && isTransient(err)) return answer(cached, 'STALE');
        throw err;
      }
    }
    await this.meta.set(key, tagRecord(result.entry, this.now()));
    return answer(result, status);
  }

  /** A manifest from storage, or undefined when its record or its bytes are missing. */
  private async stored(digest: string): Promise<{ entry: ManifestEntry; body: Buffer } | undefined> {
    const stored = await readStoredManifest({ blobs: this.blobs, meta: this.meta }, digest, this.max);
    return stored && { entry: { digest, mediaType: stored.mediaType, size: stored.body.length }, body: stored.body };
  }

  /** Rejects with the upstream's OCI error unless the route (or a digest fallback of it) has the manifest. */
  private confirmOnce(target: UpstreamTarget, digest: Digest): Promise<void> {
    return firstAnswer(digestCandidates(target), async (t) => {
      const res = await requestManifest(t, 'HEAD', digest.value);
      void discard(res.body);
    });
  }

  /** The digest the upstream currently maps the tag to, from a HEAD; undefined if it does not say. */
  private async headDigest(target: UpstreamTarget, tag: string): Promise<string | undefined> {
    const res = await requestManifest(target, 'HEAD', tag);
    void discard(res.body);
    return header(res.headers, 'docker-content-digest');
  }

  private fetch(target: UpstreamTarget, reference: string, expected?: Digest): Promise<{ entry: ManifestEntry; body: Buffer }> {
    const key = `${target.upstream.name}\n${target.repository}\n${reference}`;
    let pending = this.inFlight.get(key);
    if (!pending) {
      // By digest, any fallback upstream will do: the bytes are checked against the digest.
      const candidates = expected && reference === expected.value ? digestCandidates(target) : [target];
      pending = firstAnswer(candidates, (t) => this.fetchOnce(t, reference, expected))
        .then(async (fetched) => {
          await this.links.add(fetched.entry.digest, target);
          return fetched;
        })
        .finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private async fetchOnce(target: UpstreamTarget, reference: string, expected?: Digest): Promise<{ entry: ManifestEntry; body: Buffer }> {
    const res = await requestManifest(target, 'GET', reference);
    const body = await readCapped(res.body, this.max, 'upstream manifest');

    const announced = header(res.headers, 'docker-content-digest');
    const algorithm: DigestAlgorithm = expected?.algorithm ?? (announced ? safeDigest(announced)?.algorithm : undefined) ?? 'sha256';
    const digest = digestOf(body, algorithm);
    if (expected && digest !== expected.value) {
      throw new OciError('DIGEST_INVALID', `upstream manifest does not match ${expected.value}`, { status: 502 });
    }
    if (announced && safeDigest(announced) && announced !== digest) {
      throw new OciError('DIGEST_INVALID', `upstream manifest does not match its Docker-Content-Digest`, { status: 502 });
    }
    const mediaType =
      declaredMediaType(body) ?? baseMediaType(header(res.headers, 'content-type')) ?? MediaTypes.ociManifest;
    if (!isJsonObject(body)) throw new OciError('MANIFEST_INVALID', 'upstream sent a manifest that is not JSON', { status: 502 });

    await this.blobs.put(digest, Readable.from([body]), { size: body.length });
    await this.meta.set(manifestKey(digest), { mediaType, size: body.length } satisfies ManifestRecord);
    return { entry: { digest, mediaType, size: body.length }, body };
  }
}

/** A manifest request with every manifest type accepted; anything but 200 becomes the OCI error it means. */
async function requestManifest(target: UpstreamTarget, method: 'GET' | 'HEAD', reference: string): Promise<UpstreamResponse> {
  const res = await target.upstream.request({
    method,
    repository: target.repository,
    credentials: target.credentials,
    path: `/v2/${target.repository}/manifests/${reference}`,
    headers: { accept: MANIFEST_ACCEPT },
  });
  if (res.status !== 200) throw await upstreamError(res, 'MANIFEST_UNKNOWN');
  return res;
}

function safeDigest(value: string): Digest | undefined {
  try {
    return parseDigest(value);
  } catch {
    return undefined;
  }
}

function isJsonObject(body: Buffer): boolean {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

// Spelled out rather than `{ ...found, cache }`, on every warm manifest: see eslint.config.js.
function answer(found: { entry: ManifestEntry; body: Buffer }, cache: ManifestResult['cache']): ManifestResult {
  return { entry: found.entry, body: found.body, cache };
}

function tagRecord(entry: ManifestEntry, checkedAt: number): TagRecord {
  return { digest: entry.digest, mediaType: entry.mediaType, size: entry.size, checkedAt };
}
