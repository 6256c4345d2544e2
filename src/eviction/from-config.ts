/** Eviction as the `cache:` section of the config asks for it; none unless maxBytes or ttl is set. */
import type { MirrorConfig } from '../config.js';
import { createEviction, type Eviction, type EvictionOptions } from './evictor.js';

export function evictionFromConfig(
  cache: MirrorConfig['cache'],
  deps: Pick<EvictionOptions, 'storage' | 'events' | 'fills' | 'after' | 'onError' | 'turns'>,
): Eviction | undefined {
  const { maxBytes, ttl, evictionInterval, evictionBatch, maxManifestBytes } = cache;
  if (maxBytes === undefined && ttl === undefined) return undefined;
  return createEviction({ ...deps, maxBytes, ttl, maxManifestBytes, interval: evictionInterval, batch: evictionBatch });
}
