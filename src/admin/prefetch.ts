/**
 * `cache.prefetchPlatforms`: when a client pulls an index (or manifest list), every platform of
 * it is warmed in the background, so that the mirror can later serve the platforms nobody has
 * pulled yet, upstream or not. One index at a time, each index once per process (up to a
 * bounded memory of them); blobs already cached cost a `stat`, blobs being filled are joined.
 *
 * Upstreams that forward clients' credentials are left out: the mirror has no credentials of its
 * own for them.
 */
import { OciError, isOciError } from '../errors.js';
import type { CacheEvent } from '../events/index.js';
import { parseManifest } from '../manifests/parse.js';
import { readStoredManifest } from '../manifests/stored.js';
import { warmImage, type WarmDeps } from './warm.js';

export interface PrefetchOptions {
  maxManifestBytes: number;
  /** Upstream names whose content is never prefetched. */
  skip?: ReadonlySet<string>;
  /** Indexes remembered as done, so that pulls of them cost nothing more; default 10 000. */
  remember?: number;
  onError?: (err: unknown) => void;
}

export interface Prefetcher {
  /** Resolves once the queue is empty (for tests and shutdown). */
  idle(): Promise<void>;
  stop(): void;
}

export function prefetchPlatforms(deps: WarmDeps, options: PrefetchOptions): Prefetcher {
  const { maxManifestBytes, skip = new Set(), remember = 10_000, onError } = options;
  const seen = new Set<string>();
  let stopped = false;
  let chain: Promise<void> = Promise.resolve();

  const enqueue = (event: CacheEvent) => {
    chain = chain.then(async () => {
      if (stopped) return;
      try {
        await prefetch(event);
      } catch (err) {
        onError?.(err);
      }
    });
  };

  async function prefetch({ upstream, repository, digest }: CacheEvent): Promise<void> {
    const stored = await readStoredManifest(deps.storage, digest, maxManifestBytes);
    if (!stored || parseManifest(stored.body).kind !== 'index') return;
    try {
      await warmImage(deps, `${upstream}/${repository}@${digest}`);
    } catch (err) {
      seen.delete(digest); // tried again at the next pull
      throw new OciError(isOciError(err) ? err.code : 'UNAVAILABLE', `prefetching the platforms of ${upstream}/${repository}@${digest}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  const off = deps.events.on('cache', (e) => {
    if (stopped || e.kind !== 'manifest' || skip.has(e.upstream) || seen.has(e.digest)) return;
    seen.add(e.digest);
    // A Set iterates in insertion order: the oldest goes first.
    if (seen.size > remember) seen.delete(seen.values().next().value!);
    enqueue(e);
  });

  return {
    idle: () => chain,
    stop() {
      stopped = true;
      off();
    },
  };
}
