/**
 * `oci-mirror gc`: one reconciliation and eviction pass, now.
 *
 * Reconciliation removes records that lead nowhere: manifest and access records whose bytes
 * are gone, and tags whose manifest is gone. Eviction then runs one pass under the configured
 * `cache.maxBytes` and `cache.ttl`, by its usual rules (nothing referenced by a kept manifest,
 * nothing in use); without either limit it removes nothing.
 */
import { LINK_PREFIX } from '../access/links.js';
import { manifestKey } from '../manifests/keys.js';
import type { MirrorConfig } from '../config.js';
import type { MirrorEvents } from '../events/index.js';
import { ACCESS_PREFIX } from '../eviction/access.js';
import { createEviction, type Eviction } from '../eviction/evictor.js';
import type { EvictionTurns } from '../eviction/turns.js';
import type { Fills } from '../fill/index.js';
import type { Storage } from '../storage.js';
import { listTags } from './records.js';

export interface GcDeps {
  storage: Storage;
  events: MirrorEvents;
  fills: Pick<Fills, 'get'>;
  cache: MirrorConfig['cache'];
  /** The mirror's own eviction when it runs one; otherwise a pass is made by a fresh one. */
  eviction?: Eviction;
  /** Replicas: the fresh one takes the eviction turn like any replica would. */
  turns?: EvictionTurns;
}

export interface GcResult {
  /** Records removed because what they lead to is gone. */
  reconciled: { manifests: number; access: number; tags: number; links: number };
  /** Whether the config sets `cache.maxBytes` or `cache.ttl`; without them eviction removes nothing. */
  eviction: boolean;
  evicted: number;
  bytes: number;
  /** The batch limit stopped the pass; run gc again for the rest. */
  more: boolean;
  /** A replica was evicting at the time, so this pass removed nothing; run gc again later. */
  elsewhere: boolean;
}

export async function gc(deps: GcDeps): Promise<GcResult> {
  const { storage, cache } = deps;
  const reconciled = await reconcile(storage);
  const enabled = cache.maxBytes !== undefined || cache.ttl !== undefined;
  const own = deps.eviction;
  const eviction =
    own ??
    createEviction({
      storage,
      events: deps.events,
      fills: deps.fills,
      maxBytes: cache.maxBytes,
      ttl: cache.ttl,
      maxManifestBytes: cache.maxManifestBytes,
      batch: cache.evictionBatch,
      turns: deps.turns,
      // This one makes a single pass, below; it must not schedule others.
      interval: 2 ** 31 - 1,
    });
  try {
    await eviction.ready;
    const pass = await eviction.run();
    return { reconciled, eviction: enabled, evicted: pass.evicted, bytes: pass.bytes, more: pass.more, elsewhere: pass.elsewhere === true };
  } finally {
    if (!own) await eviction.close();
  }
}

async function reconcile(storage: Storage): Promise<GcResult['reconciled']> {
  const result = { manifests: 0, access: 0, tags: 0, links: 0 };
  const present = async (digest: string) => (await storage.blobs.stat(digest)) !== undefined;
  const manifests = manifestKey('');
  for await (const [key] of storage.meta.list(manifests)) {
    if (!(await present(key.slice(manifests.length))) && (await storage.meta.delete(key))) result.manifests++;
  }
  for await (const [key] of storage.meta.list(ACCESS_PREFIX)) {
    if (!(await present(key.slice(ACCESS_PREFIX.length))) && (await storage.meta.delete(key))) result.access++;
  }
  for await (const [key] of storage.meta.list(LINK_PREFIX)) {
    const digest = key.slice(LINK_PREFIX.length, key.indexOf('/', LINK_PREFIX.length));
    if (!(await present(digest)) && (await storage.meta.delete(key))) result.links++;
  }
  for (const t of await listTags(storage.meta)) {
    const cached = (await storage.meta.get(manifestKey(t.digest))) !== undefined && (await present(t.digest));
    if (!cached && (await storage.meta.delete(t.key))) result.tags++;
  }
  return result;
}
