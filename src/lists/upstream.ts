/**
 * The upstream's tag lists and referrers indexes, read into what the list cache keeps: only
 * what a response is made of, never the upstream's repository name.
 */
import { OciError } from '../errors.js';
import { header, readCapped } from '../http.js';
import type { UpstreamTarget } from '../state.js';
import { upstreamError } from '../upstream/errors.js';

export interface TagPage {
  tags: string[];
  /** The upstream's `Link` header, when it has a next page (re-addressed when served). */
  link?: string;
}

export interface ReferrersIndex {
  /** The index as the upstream sent it. */
  body: string;
  /** The upstream's `OCI-Filters-Applied` header. */
  filters?: string;
}

/** The cache's name for a tags query, and the upstream's query string. */
export function tagsQuery(n: number | undefined, last: string | undefined): string {
  const query = new URLSearchParams();
  if (n !== undefined) query.set('n', String(n));
  if (last !== undefined) query.set('last', last);
  return query.toString();
}

/** The cache's name for a referrers query. */
export function referrersQuery(digest: string, artifactType: string | undefined): string {
  const query = new URLSearchParams({ digest });
  if (artifactType) query.set('artifactType', artifactType);
  return query.toString();
}

export async function fetchTags(target: UpstreamTarget, n: number | undefined, last: string | undefined, max: number): Promise<TagPage> {
  const qs = tagsQuery(n, last);
  const res = await target.upstream.request({
    method: 'GET',
    repository: target.repository,
    credentials: target.credentials,
    path: `/v2/${target.repository}/tags/list${qs ? `?${qs}` : ''}`,
  });
  if (res.status !== 200) throw await upstreamError(res, 'NAME_UNKNOWN');
  const body = await readCapped(res.body, max, 'tag list');
  let parsed: { tags?: unknown };
  try {
    parsed = JSON.parse(body.toString('utf8')) as { tags?: unknown };
  } catch {
    throw new OciError('UNAVAILABLE', 'upstream sent a tag list that is not JSON', { status: 502 });
  }
  const tags = Array.isArray(parsed?.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
  const link = header(res.headers, 'link');
  return link ? { tags, link } : { tags };
}

export async function fetchReferrers(target: UpstreamTarget, digest: string, artifactType: string | undefined, max: number): Promise<ReferrersIndex> {
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
  return filters ? { body: body.toString('utf8'), filters } : { body: body.toString('utf8') };
}
