/**
 * Serves `GET`/`HEAD /v2/<name>/blobs/<digest>`: from storage when cached (with Range), and
 * otherwise by joining or starting the one fill of that blob. The fill is not this request's:
 * the body handed to koa is a reader of the fill, so a client that hangs up destroys only
 * its own reader and the blob is still cached.
 *
 * With `redirect`, a cached blob's plain GET answers 307 to a presigned URL from the store,
 * and the client fetches the bytes from there. Not a HEAD (cheap, and a GET-signed URL is no
 * good for HEAD), not a Range request (its 206 would then rest on the client resending Range
 * and on the store honouring it exactly; resumes are rare), and not for a request the
 * upstream's own access rules gate (the URL is a bearer capability).
 */
import type { Middleware, ParameterizedContext } from 'koa';
import parseRange from 'range-parser';
import type { Links } from '../../src/access/links.js';
import { OciError } from '../../src/errors.js';
import type { Fills } from '../../src/fill/index.js';
import { matchesEtag } from '../../src/http.js';
import type { UpstreamTarget } from '../../src/state.js';
import type { BlobStore } from '../../src/storage.js';
import { headBlob, upstreamBlob } from '../../src/upstream/blob.js';
import type { CacheResult, MirrorEvents } from '../../src/events/index.js';
import { reportCache } from '../shared/report.js';
import '../shared/state.js';
import { requireTarget } from '../upstream-select/index.js';

export interface BlobCacheOptions {
  blobs: BlobStore;
  fills: Fills;
  /** Which routes may serve which cached digests. */
  links: Links;
  /** Told the cache outcome of every GET and HEAD answered from storage or a fill. */
  events?: MirrorEvents;
  /** Redirect cached blob GETs to the store's presigned URLs (when it has them); off when absent. */
  redirect?: BlobRedirectOptions;
}

export interface BlobRedirectOptions {
  /** Seconds the presigned URL stays valid. */
  expiresIn: number;
  /** Upstreams whose blobs must not be handed out as URLs: those with access rules (`private`, `forwardCredentials`). */
  skip?: (target: UpstreamTarget) => boolean;
}

export const blobCache = ({ blobs, fills, links, events, redirect }: BlobCacheOptions): Middleware =>
  async function blobCache(ctx, next) {
    const route = ctx.state.oci;
    if (route?.kind !== 'blob') return next();
    const target = requireTarget(ctx);
    const digest = route.digest;
    // Held bytes are served through this route only once its upstream has them too.
    const confirm = () => links.confirm(digest.value, target, () => headBlob(target, digest));
    const etag = `"${digest.value}"`;
    ctx.set('Docker-Content-Digest', digest.value);
    ctx.set('ETag', etag);
    if (matchesEtag(ctx.get('If-None-Match'), etag) && (fills.get(digest.value) || (await blobs.stat(digest.value)))) {
      await confirm();
      ctx.status = 304;
      return;
    }

    let fill = fills.get(digest.value);
    if (!fill) {
      const info = await blobs.stat(digest.value);
      if (info) {
        await confirm();
        if (await serveStored(ctx, { blobs, events, redirect, target, digest: digest.value, size: info.size })) return;
        // Gone since it was looked up (another replica evicted it): a miss like any other.
        ctx.remove('Content-Range');
      }
      // A HEAD is a question, not a reason to pull a whole layer: ask the upstream the same, and
      // answer what a GET would: a blob too large to fetch is refused as its GET is (the same
      // status, no body), not offered with a 200 that the GET then takes back.
      if (ctx.method === 'HEAD') {
        const size = await headBlob(target, digest);
        ctx.set('X-Mirror-Cache', 'MISS');
        fills.checkDeclared(digest.value, size);
        return answerHead(ctx, size);
      }
      // Another request may have started the fill while we looked in storage.
      const started = fills.get(digest.value);
      fill = started ?? fills.acquire(digest, upstreamBlob(target, digest, links));
      if (started) await confirm();
      ctx.set('X-Mirror-Cache', started ? 'JOIN' : 'MISS');
    } else {
      await confirm();
      ctx.set('X-Mirror-Cache', 'JOIN');
    }
    reportCache(ctx, events, { kind: 'blob', result: ctx.response.get('X-Mirror-Cache') as CacheResult, target, digest: digest.value });

    const { size } = await fill.ready;
    // A fill this request started links the route when the upstream answers; one relayed from
    // another replica did not ask this route's upstream at all.
    await confirm();
    const active = fill;
    if (size === undefined) {
      // Without a declared size there is no Range to honour until the fill ends.
      ctx.status = 200;
      ctx.set('Content-Type', 'application/octet-stream');
      if (ctx.method !== 'HEAD') ctx.body = await active.reader();
      return;
    }
    if (!(await sendRange(ctx, size, (start, end) => active.reader(start, end)))) throw new OciError('BLOB_UNKNOWN', 'blob unknown to registry');
  };

interface Stored {
  blobs: BlobStore;
  events: MirrorEvents | undefined;
  redirect: BlobRedirectOptions | undefined;
  target: UpstreamTarget;
  digest: string;
  size: number;
}

/** Answers from storage (or with a redirect to it); false when the blob is no longer there to read. */
async function serveStored(ctx: ParameterizedContext, { blobs, events, redirect, target, digest, size }: Stored): Promise<boolean> {
  const hit = () => {
    ctx.set('X-Mirror-Cache', 'HIT');
    reportCache(ctx, events, { kind: 'blob', result: 'HIT', target, digest, size });
  };
  const location = redirect && redirectable(ctx, target, redirect) ? await blobs.presign?.(digest, { expiresIn: redirect.expiresIn }) : undefined;
  if (location) {
    hit();
    ctx.status = 307;
    ctx.set('Location', location);
    // The URL expires: no cache may keep the redirect longer than that.
    ctx.set('Cache-Control', 'no-store');
    return true;
  }
  // Bytes in memory go out as a Buffer: no stream, no pipeline, one write.
  const open: Open = async (start, end) => blobs.held?.(digest)?.subarray(start, end + 1) ?? blobs.read(digest, { start, end });
  if (!(await sendRange(ctx, size, open))) return false;
  hit();
  return true;
}

function redirectable(ctx: ParameterizedContext, target: UpstreamTarget, { skip }: BlobRedirectOptions): boolean {
  return ctx.method === 'GET' && !ctx.get('Range') && !target.credentials && !skip?.(target);
}

type Open = (start: number, end: number) => Promise<NodeJS.ReadableStream | Buffer | undefined>;

/** False, with nothing sent, when `open` finds nothing to read. */
async function sendRange(ctx: ParameterizedContext, size: number, open: Open): Promise<boolean> {
  ctx.set('Accept-Ranges', 'bytes');
  ctx.set('Content-Type', 'application/octet-stream');
  let start = 0;
  let end = size - 1;
  const rangeHeader = ctx.get('Range');
  if (rangeHeader && size > 0) {
    const ranges = parseRange(size, rangeHeader, { combine: true });
    if (ranges === -1) {
      throw new OciError('RANGE_INVALID', 'requested range not satisfiable', {
        headers: { 'Content-Range': `bytes */${size}` },
      });
    }
    // Malformed or multi-part ranges are ignored, as RFC 9110 allows: the whole blob follows.
    if (Array.isArray(ranges) && ranges.length === 1 && ranges.type === 'bytes') {
      start = ranges[0]!.start;
      end = ranges[0]!.end;
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${start}-${end}/${size}`);
    }
  }
  if (ctx.status !== 206) ctx.status = 200;
  if (ctx.method === 'HEAD' || size === 0) {
    ctx.length = size === 0 ? 0 : end - start + 1;
    if (size === 0 && ctx.method !== 'HEAD') ctx.body = Buffer.alloc(0);
    return true;
  }
  const stream = await open(start, end);
  if (!stream) return false;
  ctx.body = stream;
  ctx.length = end - start + 1;
  return true;
}

function answerHead(ctx: ParameterizedContext, size: number | undefined): void {
  ctx.status = 200;
  ctx.set('Content-Type', 'application/octet-stream');
  if (size !== undefined) ctx.length = size;
}
