/**
 * Tag lists and referrers come from the upstream, re-addressed to the name the client used:
 * the upstream's repository name (`library/alpine`) and its pagination links must not leak
 * through as if they were ours.
 */
import type { Middleware, ParameterizedContext } from 'koa';
import { OciError } from '../../src/errors.js';
import { header, readCapped } from '../../src/http.js';
import { MediaTypes } from '../../src/media-types.js';
import '../shared/state.js';
import { upstreamError } from '../../src/upstream/errors.js';
import { requireTarget } from '../upstream-select/index.js';

export interface ListProxyOptions {
  /** Largest tag list or referrers index accepted from an upstream. */
  maxBytes?: number;
}

export const listProxy = ({ maxBytes = 8 * 1024 * 1024 }: ListProxyOptions = {}): Middleware =>
  async function listProxy(ctx, next) {
    const route = ctx.state.oci;
    if (route?.kind === 'tags') return tagsList(ctx, route.name, route.n, route.last, maxBytes);
    if (route?.kind === 'referrers') return referrers(ctx, route.digest.value, route.artifactType, maxBytes);
    return next();
  };

async function tagsList(ctx: ParameterizedContext, name: string, n: number | undefined, last: string | undefined, max: number) {
  const target = requireTarget(ctx);
  const query = new URLSearchParams();
  if (n !== undefined) query.set('n', String(n));
  if (last !== undefined) query.set('last', last);
  const qs = query.size ? `?${query}` : '';
  const res = await target.upstream.request({
    method: 'GET',
    repository: target.repository,
    credentials: target.credentials,
    path: `/v2/${target.repository}/tags/list${qs}`,
  });
  if (res.status !== 200) throw await upstreamError(res, 'NAME_UNKNOWN');
  const body = await readCapped(res.body, max, 'tag list');
  let parsed: { tags?: unknown };
  try {
    parsed = JSON.parse(body.toString('utf8')) as { tags?: unknown };
  } catch {
    throw new OciError('UNAVAILABLE', 'upstream sent a tag list that is not JSON', { status: 502 });
  }
  const tags = Array.isArray(parsed.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
  const link = nextLink(header(res.headers, 'link'), name);
  if (link) ctx.set('Link', link);
  ctx.status = 200;
  ctx.body = { name, tags };
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

async function referrers(ctx: ParameterizedContext, digest: string, artifactType: string | undefined, max: number) {
  const target = requireTarget(ctx);
  const qs = artifactType ? `?${new URLSearchParams({ artifactType })}` : '';
  const res = await target.upstream.request({
    method: 'GET',
    repository: target.repository,
    credentials: target.credentials,
    path: `/v2/${target.repository}/referrers/${digest}${qs}`,
  });
  // An upstream without the referrers API answers 404: passing that on tells the client to
  // use the tag-schema fallback, which then comes through our manifest cache.
  if (res.status !== 200) throw await upstreamError(res, 'MANIFEST_UNKNOWN');
  const body = await readCapped(res.body, max, 'referrers index');
  const filters = header(res.headers, 'oci-filters-applied');
  if (filters) ctx.set('OCI-Filters-Applied', filters);
  ctx.status = 200;
  ctx.set('Content-Type', MediaTypes.ociIndex);
  ctx.body = body;
}
