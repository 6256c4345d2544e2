/**
 * Serves `GET`/`HEAD /v2/<name>/manifests/<reference>` from the manifest cache, with the
 * stored bytes exactly as the upstream sent them.
 */
import type { Middleware } from 'koa';
import { OciError } from '../../src/errors.js';
import type { MirrorEvents } from '../../src/events/index.js';
import { reportCache } from '../shared/report.js';
import { listsType, matchesEtag } from '../../src/http.js';
import '../shared/state.js';
import { requireTarget } from '../upstream-select/index.js';
import { ManifestCache, type ManifestCacheOptions, type ManifestResult } from '../../src/manifests/cache.js';

export { ManifestCache, manifestKey, tagKey, type ManifestCacheOptions, type ManifestEntry, type ManifestResult } from '../../src/manifests/index.js';

export type ManifestCacheMiddlewareOptions = (ManifestCacheOptions | { cache: ManifestCache }) & {
  /** Told the cache outcome of every manifest answered. */
  events?: MirrorEvents;
};

export const manifestCache = (options: ManifestCacheMiddlewareOptions): Middleware => {
  const cache = 'cache' in options ? options.cache : new ManifestCache(options);
  return async function manifestCache(ctx, next) {
    const route = ctx.state.oci;
    if (route?.kind !== 'manifest') return next();
    const target = requireTarget(ctx);
    const result =
      route.reference.kind === 'digest'
        ? await cache.byDigest(target, route.reference.digest)
        : await cache.byTag(target, route.reference.tag);
    reportCache(ctx, options.events, { kind: 'manifest', result: result.cache, target, digest: result.entry.digest, size: result.entry.size });
    send(ctx, result);
  };
};

function send(ctx: Parameters<Middleware>[0], { entry, body, cache }: ManifestResult): void {
  // The spec: a manifest whose type the client did not ask for is unknown to that client.
  const accept = ctx.get('Accept');
  if (accept && !listsType(accept, entry.mediaType) && !ctx.accepts(entry.mediaType)) {
    throw new OciError('MANIFEST_UNKNOWN', `manifest is ${entry.mediaType}, which the request does not accept`);
  }
  const etag = `"${entry.digest}"`;
  ctx.set('Docker-Content-Digest', entry.digest);
  ctx.set('ETag', etag);
  ctx.set('X-Mirror-Cache', cache);
  if (cache === 'STALE') ctx.set('Warning', '110 - "Response is Stale"');
  if (matchesEtag(ctx.get('If-None-Match'), etag)) {
    ctx.status = 304;
    return;
  }
  ctx.status = 200;
  // The type first: a body set without one makes koa look one up (and set the length, so no more is needed).
  ctx.set('Content-Type', entry.mediaType);
  ctx.body = body;
}
