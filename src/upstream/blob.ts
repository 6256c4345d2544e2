/**
 * The two upstream questions about a blob, each asked of the route's upstream first and then of
 * its digest fallbacks (the bytes are verified by digest whoever sends them): a GET to fill
 * from, and a HEAD for "do you have it, and how big is it".
 */
import type { Links } from '../access/links.js';
import type { FillSource } from '../fill/index.js';
import { discard, header } from '../http.js';
import type { Digest } from '../reference.js';
import type { UpstreamTarget } from '../state.js';
import { upstreamError } from './errors.js';
import { digestCandidates, firstAnswer } from './fallback.js';

/**
 * The upstream GET a blob fill is made from. An upstream that answers it has the blob for this
 * route, so the route is linked: at once in memory, and in the store before the blob is
 * committed. The record's write (two fsyncs on fs) runs beside the body, not before its first
 * byte: a small layer would otherwise wait on the disk before the client sees anything.
 */
export function upstreamBlob(target: UpstreamTarget, digest: Digest, links: Links): FillSource {
  return (signal) =>
    firstAnswer(
      digestCandidates(target),
      async (t) => {
        const res = await t.upstream.request({
          method: 'GET',
          repository: t.repository,
          credentials: t.credentials,
          path: `/v2/${t.repository}/blobs/${digest.value}`,
          signal,
        });
        if (res.status !== 200) throw await upstreamError(res, 'BLOB_UNKNOWN');
        return { size: declaredLength(res.headers), body: res.body, beforeCommit: links.add(digest.value, target) };
      },
      signal,
    );
}

/** The blob's size as the route's upstream declares it; rejects with its OCI error when it has no such blob. */
export function headBlob(target: UpstreamTarget, digest: Digest): Promise<number | undefined> {
  return firstAnswer(digestCandidates(target), async (t) => {
    const res = await t.upstream.request({
      method: 'HEAD',
      repository: t.repository,
      credentials: t.credentials,
      path: `/v2/${t.repository}/blobs/${digest.value}`,
    });
    if (res.status !== 200) throw await upstreamError(res, 'BLOB_UNKNOWN');
    void discard(res.body);
    return declaredLength(res.headers);
  });
}

function declaredLength(headers: Record<string, string | string[] | undefined>): number | undefined {
  const length = header(headers, 'content-length');
  return length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
}
