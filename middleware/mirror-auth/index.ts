/**
 * `mirrorAuth` makes the mirror itself protected: clients authenticate with an htpasswd user
 * (bcrypt) or a static bearer token, and per-repository rules say who pulls what.
 * `requireClient` asks routes beside the mirror (the status page) for the same credentials.
 * Upstreams whose content is not for everyone are `upstreamAccess`'s.
 */
import type { Middleware } from 'koa';
import { pullRules, type AccessRule } from '../../src/access/rules.js';
import { OciError } from '../../src/errors.js';
import { secretMatcher, type Secret } from '../../src/secrets.js';
import type { UpstreamTarget } from '../../src/state.js';
import '../shared/state.js';
import { presented, unauthorized } from '../shared/credentials.js';
import type { Htpasswd } from './htpasswd.js';

export { htpasswd, loadHtpasswd, parseHtpasswd, type Htpasswd } from './htpasswd.js';
export type { AccessRule } from '../../src/access/rules.js';

export interface ClientIdentifierOptions {
  htpasswd?: Htpasswd;
  /** A function is asked on every use (a rotated token file). */
  tokens?: ReadonlyArray<{ name: string; token: Secret }>;
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
