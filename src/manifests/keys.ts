/**
 * The metadata key scheme of manifests, in one place: every reader (eviction, gc, purge, ls)
 * and the one writer (the manifest cache) agree on it through these names.
 *
 * - `manifest/<digest>` → `{ mediaType, size }`: the manifest's bytes are stored as a blob.
 * - `tag/<upstream>/<repository>:<tag>` → `{ digest, mediaType, size, checkedAt }`: per
 *   upstream, since `nginx:latest` from two registries must never mix.
 */
export const MANIFEST_PREFIX = 'manifest/';
export const TAG_PREFIX = 'tag/';

export const manifestKey = (digest: string): string => `${MANIFEST_PREFIX}${digest}`;

export const tagKey = (route: { upstream: { name: string }; repository: string }, tag: string): string =>
  `${TAG_PREFIX}${route.upstream.name}/${route.repository}:${tag}`;

/**
 * How long a tag record read from storage may be trusted without reading it again: until its
 * TTL runs out, when the mirror would ask the upstream anyway. For the memo (src/memo/), which
 * thereby sees a tag another replica moved no later than any mirror would.
 */
export const tagRecordExpiry =
  (tagTtl: number) =>
  (key: string, value: unknown): number | undefined =>
    key.startsWith(TAG_PREFIX) ? ((value as { checkedAt?: number }).checkedAt ?? 0) + tagTtl : undefined;

/** The parts of a tag key: upstream names hold no slash, repositories no colon. */
export function parseTagKey(key: string): { upstream: string; repository: string; tag: string } | undefined {
  const rest = key.slice(TAG_PREFIX.length);
  const slash = rest.indexOf('/');
  const colon = rest.lastIndexOf(':');
  if (!key.startsWith(TAG_PREFIX) || slash <= 0 || colon <= slash + 1) return undefined;
  return { upstream: rest.slice(0, slash), repository: rest.slice(slash + 1, colon), tag: rest.slice(colon + 1) };
}

/** The largest manifest read from an upstream or from storage, unless the config says otherwise. */
export const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
