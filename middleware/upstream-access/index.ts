/**
 * `upstreamAccess` handles upstreams whose content is not for everyone: it forwards the
 * client's own credentials to that upstream (and to no other), and before anything cached is
 * served it has the upstream confirm that this client may read the repository.
 */
import type { Middleware } from 'koa';
import { OciError, isOciError, type ErrorCode } from '../../src/errors.js';
import { discard } from '../../src/http.js';
import { MANIFEST_ACCEPT } from '../../src/media-types.js';
import type { OciRoute, UpstreamTarget } from '../../src/state.js';
import { upstreamError } from '../../src/upstream/errors.js';
import { credentialIdentity } from '../../src/upstream/token.js';
import type { UpstreamCredentials } from '../../src/upstream/types.js';
import { presented, unauthorized } from '../shared/credentials.js';
import '../shared/state.js';

export interface UpstreamPolicy {
  /** Fetch with each client's own credentials, not the mirror's. */
  forwardCredentials: boolean;
  /** Serve cached content only to clients the upstream confirms may read it. */
  private: boolean;
}

export interface UpstreamAccessOptions {
  /** The policy for an upstream by name; undefined for an open one. */
  policy: (upstreamName: string) => UpstreamPolicy | undefined;
  /**
   * Whether any upstream wants clients' credentials. Clients (containers/image, Docker) learn
   * from `/v2/` alone whether to send credentials at all, so then `/v2/` challenges them.
   */
  challengeAtBase?: boolean;
  /** How long a confirmed (client, repository) pair is trusted, ms. */
  ttl?: number;
  now?: () => number;
}

const MAX_REMEMBERED = 10_000;

export const upstreamAccess = ({ policy, challengeAtBase = false, ttl = 60_000, now = Date.now }: UpstreamAccessOptions): Middleware => {
  const confirmed = new Map<string, number>();
  const pending = new Map<string, Promise<void>>();

  async function confirm(target: UpstreamTarget, route: Exclude<OciRoute, { kind: 'base' }>, credentials: UpstreamCredentials) {
    const key = `${credentialIdentity(credentials)}\n${target.upstream.name}\n${target.repository}`;
    const until = confirmed.get(key);
    if (until !== undefined && until > now()) return;
    let check = pending.get(key);
    if (!check) {
      check = ask(target, route, credentials)
        .then(() => {
          if (confirmed.size >= MAX_REMEMBERED) confirmed.clear();
          confirmed.set(key, now() + ttl);
        })
        .finally(() => pending.delete(key));
      pending.set(key, check);
    }
    await check;
  }

  return async function upstreamAccess(ctx, next) {
    const route = ctx.state.oci;
    const target = ctx.state.target;
    if (route?.kind === 'base' && challengeAtBase && !ctx.get('Authorization')) {
      // A client without credentials still pulls from open upstreams: it just sends none.
      throw unauthorized('log in to pull from the private upstreams of this mirror');
    }
    if (!route || route.kind === 'base' || !target) return next();
    const rules = policy(target.upstream.name);
    if (!rules || (!rules.forwardCredentials && !rules.private)) return next();

    const p = presented(ctx.get('Authorization'));
    const credentials = ctx.state.client?.basic ?? (p?.scheme === 'basic' ? p.credentials : undefined);
    if (!credentials) throw unauthorized(`${target.upstream.name} needs your credentials for ${route.name}`);
    if (route.kind === 'tags' || route.kind === 'referrers') {
      // With the client's credentials a list bypasses the list cache and goes upstream: the upstream decides.
      ctx.state.target = withCredentials(target, credentials);
      return next();
    }
    if (rules.private) await confirm(target, route, credentials);
    if (rules.forwardCredentials) ctx.state.target = withCredentials(target, credentials);
    return next();
  };
};

/** The client's credentials go to this upstream only, never to a fallback. */
function withCredentials(target: UpstreamTarget, credentials: UpstreamCredentials): UpstreamTarget {
  return { upstream: target.upstream, repository: target.repository, credentials };
}

/** One cheap authenticated HEAD: may this client read this repository? */
async function ask(target: UpstreamTarget, route: Exclude<OciRoute, { kind: 'base' }>, credentials: UpstreamCredentials) {
  const [resource, notFound]: [string, ErrorCode] =
    route.kind === 'manifest'
      ? [`manifests/${route.reference.kind === 'tag' ? route.reference.tag : route.reference.digest.value}`, 'MANIFEST_UNKNOWN']
      : route.kind === 'blob'
        ? [`blobs/${route.digest.value}`, 'BLOB_UNKNOWN']
        : ['tags/list', 'NAME_UNKNOWN'];
  let res;
  try {
    res = await target.upstream.request({
      method: 'HEAD',
      repository: target.repository,
      path: `/v2/${target.repository}/${resource}`,
      // Every manifest type, or an old registry answers 404 for what it cannot down-convert.
      headers: route.kind === 'manifest' ? { accept: MANIFEST_ACCEPT } : {},
      credentials,
    });
  } catch (err) {
    // A token server that refuses the client's credentials answers through an error, not a 401 response.
    if (isOciError(err) && err.code === 'UNAUTHORIZED') {
      throw unauthorized(`${target.upstream.name} refused these credentials for ${route.name}`);
    }
    if (isOciError(err) && err.code === 'DENIED') throw new OciError('DENIED', err.message);
    // Held off by the upstream's rate limit: no answer either, but one that says when to come back.
    if (isOciError(err) && err.code === 'TOOMANYREQUESTS') throw err;
    // Fail closed: without the upstream's word, nothing private is served.
    throw new OciError('UNAVAILABLE', `cannot confirm access to ${route.name} with ${target.upstream.name}`, { cause: err });
  }
  if (res.status === 429) throw await upstreamError(res, notFound);
  void discard(res.body);
  if (res.status === 200) return;
  if (res.status === 401) throw unauthorized(`${target.upstream.name} refused these credentials for ${route.name}`);
  if (res.status === 403) throw new OciError('DENIED', `${target.upstream.name} denies access to ${route.name}`);
  if (res.status === 404) throw new OciError(notFound, `${route.name}: not found upstream`);
  throw new OciError('UNAVAILABLE', `cannot confirm access to ${route.name}: ${target.upstream.name} answered ${res.status}`);
}

