/**
 * Tag lists and referrers come from the upstream, or from the list cache when one is given,
 * re-addressed to the name the client used: the upstream's repository name (`library/alpine`)
 * and its pagination links must not leak through as if they were ours.
 */
import type { Middleware, ParameterizedContext } from 'koa';
import type { ListEvent, MirrorEvents } from '../../src/events/index.js';
import { MediaTypes } from '../../src/media-types.js';
import '../shared/state.js';
import { ListCache, fetchReferrers, fetchTags, referrersQuery, tagsQuery, type ListKind, type ListResult } from '../../src/lists/index.js';
import type { UpstreamTarget } from '../../src/state.js';
import { requireTarget } from '../upstream-select/index.js';

export { ListCache, type ListCacheOptions } from '../../src/lists/index.js';

export interface ListProxyOptions {
  /** Largest tag list or referrers index accepted from an upstream. */
  maxBytes?: number;
  /** Keeps answers for outages and repeated requests; without it every request goes upstream. */
  cache?: ListCache;
  /** Told the cache outcome of every list answered (only with a cache). */
  events?: MirrorEvents;
}

export const listProxy = ({ maxBytes = 8 * 1024 * 1024, cache, events }: ListProxyOptions = {}): Middleware => {
  const answer = <T>(kind: ListKind, target: UpstreamTarget, query: string, fetch: () => Promise<T>): Promise<ListResult<T>> =>
    cache ? cache.answer(kind, target, query, fetch) : fetch().then((value) => ({ value, cache: 'MISS' }));

  return async function listProxy(ctx, next) {
    const route = ctx.state.oci;
    if (route?.kind === 'tags') {
      const target = requireTarget(ctx);
      const { n, last, name } = route;
      const page = await answer('tags', target, tagsQuery(n, last), () => fetchTags(target, n, last, maxBytes));
      const link = nextLink(page.value.link, name);
      if (link) ctx.set('Link', link);
      if (cache) marked(ctx, events, { kind: 'tags', result: page.cache, upstream: target.upstream.name, repository: target.repository });
      ctx.status = 200;
      ctx.body = { name, tags: page.value.tags };
      return;
    }
    if (route?.kind === 'referrers') {
      const target = requireTarget(ctx);
      const { digest, artifactType } = route;
      const index = await answer('referrers', target, referrersQuery(digest.value, artifactType), () =>
        fetchReferrers(target, digest.value, artifactType, maxBytes),
      );
      if (index.value.filters) ctx.set('OCI-Filters-Applied', index.value.filters);
      if (cache) marked(ctx, events, { kind: 'referrers', result: index.cache, upstream: target.upstream.name, repository: target.repository });
      ctx.status = 200;
      ctx.set('Content-Type', MediaTypes.ociIndex);
      ctx.body = Buffer.from(index.value.body, 'utf8');
      return;
    }
    return next();
  };
};

/** The cache outcome, as the manifest and blob responses say it, and to the observers. */
function marked(ctx: ParameterizedContext, events: MirrorEvents | undefined, event: ListEvent): void {
  ctx.set('X-Mirror-Cache', event.result);
  if (event.result === 'STALE') ctx.set('Warning', '110 - "Response is Stale"');
  events?.emit('list', event);
}

/** Rewrites an upstream `Link: <…?last=x&n=y>; rel="next"` to point at our own name. */
export function nextLink(link: string | undefined, name: string): string | undefined {
  if (!link) return undefined;
  const m = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(link);
  if (!m) return undefined;
  let upstream: URL;
  try {
    upstream = new URL(m[1]!, 'http://upstream.invalid');
  } catch {
    return undefined;
  }
  const query = new URLSearchParams();
  for (const key of ['n', 'last']) {
    const v = upstream.searchParams.get(key);
    if (v !== null) query.set(key, v);
  }
  return `</v2/${name}/tags/list?${query}>; rel="next"`;
}
