/**
 * Two middlewares, one job each:
 * - `mirrorAuth` makes the mirror itself protected: clients authenticate with an htpasswd
 *   user (bcrypt) or a static bearer token, and per-repository rules say who pulls what.
 * - `upstreamAccess` handles upstreams whose content is not for everyone: it forwards the
 *   client's own credentials to that upstream (and to no other), and before anything cached
 *   is served it has the upstream confirm that this client may read the repository.
 */
import type { Middleware } from 'koa';
import { pullRules, type AccessRule } from '../../src/access/rules.js';
import { OciError, isOciError, type ErrorCode } from '../../src/errors.js';
import { discard } from '../../src/http.js';
import { MANIFEST_ACCEPT } from '../../src/media-types.js';
import { secretMatcher } from '../../src/secrets.js';
import type { OciRoute, UpstreamTarget } from '../../src/state.js';
import '../shared/state.js';
import { credentialIdentity } from '../../src/upstream/token.js';
import type { UpstreamCredentials } from '../../src/upstream/types.js';
import { BASIC_CHALLENGE, presented } from './credentials.js';
import type { Htpasswd } from './htpasswd.js';

export { BASIC_CHALLENGE, presented } from './credentials.js';
export { htpasswd, loadHtpasswd, parseHtpasswd, type Htpasswd } from './htpasswd.js';
export type { AccessRule } from '../../src/access/rules.js';

export interface ClientIdentifierOptions {
  htpasswd?: Htpasswd;
  tokens?: ReadonlyArray<{ name: string; token: string }>;
}

/**
 * Who the `Authorization` header says the client is: an htpasswd user's or a token's name,
 * undefined when it presents nothing. Credentials that do not check out throw UNAUTHORIZED.
 */
export type IdentifyClient = (authorization: string | undefined) => Promise<string | undefined>;

export interface MirrorAuthOptions {
  /** How clients are recognized (see `clientIdentifier`). */
  identify: IdentifyClient;
  /** Repositories anonymous clients may pull (same globs as rules). None by default. */
  anonymous?: readonly string[];
  /** Who may pull what. Without rules every authenticated client may pull everything. */
  rules?: readonly AccessRule[];
  /** Upstreams whose clients authenticate to the upstream instead (their credentials are forwarded). */
  exempt?: (target: UpstreamTarget) => boolean;
}

const unauthorized = (message: string) => new OciError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': BASIC_CHALLENGE } });

export function clientIdentifier({ htpasswd, tokens = [] }: ClientIdentifierOptions): IdentifyClient {
  const known = tokens.map((t) => ({ name: t.name, matches: secretMatcher(t.token) }));

  function tokenName(token: string): string | undefined {
    // Compare against every token, in constant time each: no early exit to time.
    let found: string | undefined;
    for (const t of known) if (t.matches(token)) found ??= t.name;
    return found;
  }

  return async function identify(authorization) {
    const p = presented(authorization);
    let name: string | undefined;
    if (p?.scheme === 'basic' && htpasswd && (await htpasswd.verify(p.credentials.username, p.credentials.password))) {
      name = p.credentials.username;
    } else if (p?.scheme === 'bearer') {
      name = tokenName(p.token);
    }
    if (p && name === undefined) throw unauthorized('invalid credentials');
    return name;
  };
}

/**
 * For routes of an application's own beside a protected mirror (the status page): only
 * clients the mirror recognizes get through, whatever they may pull.
 */
export const requireClient = ({ identify }: { identify: IdentifyClient }): Middleware =>
  async function requireClient(ctx, next) {
    const name = await identify(ctx.get('Authorization'));
    if (name === undefined) throw unauthorized('authentication required');
    ctx.state.client = { name };
    return next();
  };

export const mirrorAuth = ({ identify, anonymous = [], rules, exempt }: MirrorAuthOptions): Middleware => {
  const may = pullRules({ anonymous, rules });

  return async function mirrorAuth(ctx, next) {
    const route = ctx.state.oci;
    if (!route) return next();
    const target = ctx.state.target;
    if (target && exempt?.(target)) return next();
    const name = await identify(ctx.get('Authorization'));
    ctx.state.client = { name };
    if (route.kind === 'base') {
      // `docker login` checks credentials here; anonymous clients learn that they may log in.
      if (name === undefined && anonymous.length === 0) throw unauthorized('authentication required');
      return next();
    }
    const repository = target ? `${target.upstream.name}/${target.repository}` : route.name;
    if (!may(name, repository)) {
      if (name === undefined) throw unauthorized(`authentication required to pull ${route.name}`);
      throw new OciError('DENIED', `${name} may not pull ${route.name}`);
    }
    return next();
  };
};

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
      // Lists go upstream on every request anyway: with the client's credentials, the upstream decides.
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
    // Fail closed: without the upstream's word, nothing private is served.
    throw new OciError('UNAVAILABLE', `cannot confirm access to ${route.name} with ${target.upstream.name}`, { cause: err });
  }
  void discard(res.body);
  if (res.status === 200) return;
  if (res.status === 401) throw unauthorized(`${target.upstream.name} refused these credentials for ${route.name}`);
  if (res.status === 403) throw new OciError('DENIED', `${target.upstream.name} denies access to ${route.name}`);
  if (res.status === 404) throw new OciError(notFound, `${route.name}: not found upstream`);
  throw new OciError('UNAVAILABLE', `cannot confirm access to ${route.name}: ${target.upstream.name} answered ${res.status}`);
}

