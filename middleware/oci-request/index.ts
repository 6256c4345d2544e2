/**
 * Parses and validates a `/v2/` request into `ctx.state.oci`. Everything a client sends is
 * checked here against the spec's grammar before any storage key or upstream URL is built
 * from it: the path is matched raw (undecoded), so `%2F`, `..` and friends never pass.
 * A mirror is read-only: pushes, deletes and uploads answer 405 UNSUPPORTED.
 */
import type { Middleware } from 'koa';
import { OciError } from '../../src/errors.js';
import { assertName, assertTag, parseDigest, parseManifestReference } from '../../src/reference.js';
import type { OciRoute } from '../../src/state.js';
import '../shared/state.js';

export interface OciRequestOptions {
  /** Largest `n` accepted on a tags list; larger asks are refused, not silently capped. */
  maxPageSize?: number;
}

const READ_METHODS = new Set(['GET', 'HEAD']);

/** Only ever read. */
const NO_QUERY = new URLSearchParams();

const ROUTES: Array<{ re: RegExp; build: (m: RegExpExecArray, q: URLSearchParams) => OciRoute }> = [
  {
    re: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
    build: (m) => ({ kind: 'manifest', name: assertName(m[1]!), reference: parseManifestReference(m[2]!) }),
  },
  {
    re: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
    build: (m) => ({ kind: 'blob', name: assertName(m[1]!), digest: parseDigest(m[2]!) }),
  },
  {
    re: /^\/v2\/(.+)\/referrers\/([^/]+)$/,
    build: (m, q) => {
      const artifactType = single(q, 'artifactType');
      if (artifactType !== undefined && !/^[a-z0-9][\w.+-]*\/[\w.+-]+$/i.test(artifactType)) {
        throw new OciError('UNSUPPORTED', 'invalid artifactType', { status: 400 });
      }
      return { kind: 'referrers', name: assertName(m[1]!), digest: parseDigest(m[2]!), artifactType };
    },
  },
];

export const ociRequest = ({ maxPageSize = 10_000 }: OciRequestOptions = {}): Middleware =>
  async function ociRequest(ctx, next) {
    const path = ctx.path;
    if (path !== '/v2' && !path.startsWith('/v2/')) return next();
    ctx.set('Docker-Distribution-API-Version', 'registry/2.0');

    if (path === '/v2' || path === '/v2/') {
      requireRead(ctx.method);
      ctx.state.oci = { kind: 'base' };
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 200;
        ctx.set('Content-Type', 'application/json');
        ctx.body = '{}';
      }
      return;
    }

    if (/^\/v2\/.+\/blobs\/uploads(?:\/|$)/.test(path)) {
      throw new OciError('UNSUPPORTED', 'this registry is a read-only mirror');
    }
    if (path === '/v2/_catalog') throw new OciError('UNSUPPORTED', 'the catalog is not available on a mirror');

    // Most requests have no query: they share one empty set of parameters.
    const query = ctx.querystring ? new URLSearchParams(ctx.querystring) : NO_QUERY;
    const tags = /^\/v2\/(.+)\/tags\/list$/.exec(path);
    if (tags) {
      requireRead(ctx.method);
      ctx.state.oci = { kind: 'tags', name: assertName(tags[1]!), ...pagination(query, maxPageSize) };
      return next();
    }
    for (const { re, build } of ROUTES) {
      const m = re.exec(path);
      if (!m) continue;
      const route = build(m, query);
      requireRead(ctx.method);
      ctx.state.oci = route;
      return next();
    }
    throw new OciError('NAME_UNKNOWN', 'no such endpoint', { status: 404 });
  };

function requireRead(method: string): void {
  if (!READ_METHODS.has(method)) {
    throw new OciError('UNSUPPORTED', 'this registry is a read-only mirror', { headers: { Allow: 'GET, HEAD' } });
  }
}

function single(q: URLSearchParams, key: string): string | undefined {
  const all = q.getAll(key);
  if (all.length > 1) throw new OciError('UNSUPPORTED', `query parameter ${key} given more than once`, { status: 400 });
  return all[0];
}

function pagination(q: URLSearchParams, max: number): { n?: number; last?: string } {
  const out: { n?: number; last?: string } = {};
  const n = single(q, 'n');
  if (n !== undefined) {
    if (!/^\d{1,9}$/.test(n) || Number(n) > max) {
      throw new OciError('PAGINATION_NUMBER_INVALID', `n must be an integer from 0 to ${max}`);
    }
    out.n = Number(n);
  }
  const last = single(q, 'last');
  if (last !== undefined) out.last = assertTag(last);
  return out;
}
