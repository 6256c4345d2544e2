/**
 * The Docker Registry token exchange (distribution's docs/spec/auth/token.md), the way
 * go-containerregistry's `transport/bearer.go` does it: GET the realm with `service` and `scope`,
 * basic auth to the token server when credentials are configured, accept `token` or
 * `access_token`, cap the body. Tokens are cached per (realm, service, scope, identity) and
 * concurrent fetches of one key share one request; both maps live in the closure of one upstream.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Tldts from 'tldts';
import type { Dispatcher } from 'undici';
import { deadline } from '../deadline.js';
import { OciError } from '../errors.js';
import { discard, readWithin } from './body.js';
import { retryAfterHeader } from './errors.js';
import type { RateLimit } from './rate-limit.js';
import { shortReason } from './reason.js';
import { TokenCache, type CachedToken } from './token-cache.js';
import type { UpstreamCredentials } from './types.js';

// tldts's suffix list costs about 1 MB of heap (more RSS); it loads on the first realm on another host,
// synchronously (its CommonJS build is what an import loads too), so checkRealm stays synchronous.
const require = createRequire(import.meta.url);
let tldts: typeof Tldts | undefined;
const getDomain: typeof Tldts.getDomain = (...args) => (tldts ??= require('tldts') as typeof Tldts).getDomain(...args);

export interface BearerChallenge {
  realm: string;
  service?: string;
}

export interface TokenSourceOptions {
  /** The upstream's name, for messages. */
  name: string;
  /** The upstream's own URL: the realm must be on its host or registrable domain. */
  upstream: URL;
  credentials?: UpstreamCredentials;
  dispatcherFor(origin: string): Dispatcher;
  /** Deadline for the whole exchange (headers and body), ms. */
  timeout: number;
  userAgent: string;
  /** The upstream's back-off: a token server's 429 starts it, and while it runs no exchange is sent. */
  rateLimit?: Pick<RateLimit, 'check' | 'backOff'>;
}

export interface TokenSource {
  /** A cached token still good for a while, without any I/O. `credentials` defaults to the configured ones. */
  cached(challenge: BearerChallenge, scope: string | undefined, credentials?: UpstreamCredentials): string | undefined;
  /**
   * A token for the scope: the cached one unless it is `stale` (the one the upstream just
   * refused), else a fresh one, shared with any concurrent caller of the same key.
   * `credentials` (a client's own, forwarded) replace the configured ones for this exchange.
   */
  get(
    challenge: BearerChallenge,
    scope: string | undefined,
    signal?: AbortSignal,
    stale?: string,
    credentials?: UpstreamCredentials,
  ): Promise<string>;
  /** Forgets every token and abandons the exchanges under way. */
  close(): void;
}

/** Token bodies are a few KiB; anything near this is not a token. */
export const TOKEN_BODY_LIMIT = 1024 * 1024;
/** distribution's token spec: "When omitted, this defaults to 60 seconds." */
const DEFAULT_EXPIRES_IN_S = 60;
/** What may stand after `Bearer ` in a header: visible ASCII, no spaces. */
const TOKEN_SHAPE = /^[\x21-\x7e]{1,16384}$/;

export function createTokenSource(options: TokenSourceOptions): TokenSource {
  const cache = new TokenCache();
  const inflight = new Map<string, Promise<string>>();
  const closed = new AbortController();

  const keyOf = (c: BearerChallenge, scope: string | undefined, credentials: UpstreamCredentials | undefined): string =>
    JSON.stringify([c.realm, c.service ?? '', scope ?? '', credentialIdentity(credentials)]);

  async function exchange(
    key: string,
    challenge: BearerChallenge,
    scope: string | undefined,
    credentials: UpstreamCredentials | undefined,
  ): Promise<string> {
    const entry = await fetchToken(options, challenge, scope, credentials, closed.signal);
    cache.remember(key, entry);
    return entry.token;
  }

  return {
    cached: (challenge, scope, credentials = options.credentials) => cache.fresh(keyOf(challenge, scope, credentials)),

    get(challenge, scope, signal, stale, credentials = options.credentials) {
      const key = keyOf(challenge, scope, credentials);
      const hit = cache.fresh(key);
      if (hit !== undefined && hit !== stale) return Promise.resolve(hit);
      if (hit !== undefined) cache.forget(key);
      let pending = inflight.get(key);
      if (pending === undefined) {
        pending = exchange(key, challenge, scope, credentials).finally(() => inflight.delete(key));
        // Waiters may all have given up (aborted); the shared promise must not become unhandled.
        pending.catch(() => undefined);
        inflight.set(key, pending);
      }
      return abortable(pending, signal);
    },

    close() {
      closed.abort();
      cache.clear();
    },
  };
}

/** One exchange with the token server, for the challenge's realm once that is found acceptable. */
async function fetchToken(
  options: TokenSourceOptions,
  challenge: BearerChallenge,
  scope: string | undefined,
  credentials: UpstreamCredentials | undefined,
  closed: AbortSignal,
): Promise<CachedToken> {
  const realm = checkRealm(challenge.realm, options.upstream, options.name, credentials !== undefined);
  if (challenge.service !== undefined) realm.searchParams.set('service', challenge.service);
  if (scope !== undefined) realm.searchParams.set('scope', scope);
  const server = `upstream ${options.name} token server ${realm.hostname}`;
  const body = await requestToken(options, realm, server, credentials, closed);
  if (body === undefined) {
    throw new OciError('UNAVAILABLE', `${server} sent a token response over ${TOKEN_BODY_LIMIT} bytes`, { status: 502 });
  }
  const entry = parseTokenResponse(body, Date.now());
  if (entry === undefined) {
    throw new OciError('UNAVAILABLE', `${server} sent no usable token`, { status: 502 });
  }
  return entry;
}

/** The token server's answer, capped; `undefined` when it is over the cap. Fails with an OciError. */
async function requestToken(
  options: TokenSourceOptions,
  realm: URL,
  server: string,
  credentials: UpstreamCredentials | undefined,
  closed: AbortSignal,
): Promise<Buffer | undefined> {
  // Held off (by the registry's 429 or this server's own), the token server is not asked either.
  options.rateLimit?.check();
  const headers: Record<string, string> = { accept: 'application/json', 'user-agent': options.userAgent };
  if (credentials !== undefined) headers.authorization = basicAuthorization(credentials);
  const { signal, clear } = deadline(
    options.timeout,
    () => new DOMException(`token exchange took over ${options.timeout} ms`, 'TimeoutError'),
    closed,
  );
  try {
    const res = await options.dispatcherFor(realm.origin).request({
      origin: realm.origin,
      path: realm.pathname + realm.search,
      method: 'GET',
      headers,
      signal,
      headersTimeout: options.timeout,
      bodyTimeout: options.timeout,
    });
    if (res.statusCode !== 200) {
      await discard(res.body);
      if (res.statusCode === 429) options.rateLimit?.backOff(res.headers['retry-after']);
      throw refusal(server, res.statusCode, credentials !== undefined, res.headers['retry-after']);
    }
    return await readWithin(res.body, TOKEN_BODY_LIMIT);
  } catch (err) {
    if (err instanceof OciError) throw err;
    throw new OciError('UNAVAILABLE', `${server} unreachable: ${shortReason(err)}`, { cause: err });
  } finally {
    clear();
  }
}

/**
 * The realm comes from the upstream's answer, so it is attacker-controlled whenever the upstream
 * (or anyone on the path to a plain-HTTP upstream) is: the realm must be the upstream's own host or
 * share its registrable domain (`registry-1.docker.io` → `auth.docker.io`). Private suffixes count
 * (`a.herokuapp.com` and `b.herokuapp.com` are strangers). Credentials go over https only, unless
 * the user configured the upstream itself as plain http.
 */
export function checkRealm(realm: string, upstream: URL, name: string, withCredentials: boolean): URL {
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new OciError('UNAVAILABLE', `upstream ${name} sent an invalid token realm`, { status: 502 });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new OciError('DENIED', `upstream ${name}: refusing token realm with scheme ${url.protocol.slice(0, 16)}`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new OciError('DENIED', `upstream ${name}: refusing token realm ${url.hostname} with user info`);
  }
  if (!sameSite(url.hostname, upstream.hostname)) {
    throw new OciError('DENIED', `upstream ${name}: refusing token realm ${url.hostname}, outside ${upstream.hostname}'s domain`);
  }
  if (withCredentials && url.protocol === 'http:' && upstream.protocol === 'https:') {
    throw new OciError('DENIED', `upstream ${name}: refusing to send credentials to plain-http token realm ${url.hostname}`);
  }
  url.hash = '';
  return url;
}

function sameSite(host: string, upstreamHost: string): boolean {
  if (host === upstreamHost) return true;
  const domain = getDomain(upstreamHost, { allowPrivateDomains: true });
  // IP addresses and single labels (`localhost`) have no registrable domain: same host only.
  return domain !== null && getDomain(host, { allowPrivateDomains: true }) === domain;
}

/**
 * Who a cached token belongs to. The password is part of it (hashed): keyed by user name
 * alone, a client with a wrong password would be handed the token another client earned.
 */
export function credentialIdentity(credentials: UpstreamCredentials | undefined): string {
  if (credentials === undefined) return 'anonymous';
  const hash = createHash('sha256').update(`${credentials.username}\0${credentials.password}`).digest('base64url');
  return `basic:${credentials.username}:${hash}`;
}

export function basicAuthorization(credentials: UpstreamCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

function refusal(server: string, status: number, withCredentials: boolean, retryAfter: string | string[] | undefined): OciError {
  switch (status) {
    case 401:
      return new OciError(
        'UNAUTHORIZED',
        withCredentials ? `${server} rejected the configured credentials` : `${server} requires credentials`,
      );
    case 403:
      return new OciError('DENIED', `${server} denied the token`);
    case 429:
      // Told as a registry's 429 is (upstreamError): the client waits as long as the back-off does.
      return new OciError('TOOMANYREQUESTS', `${server} is rate limiting`, { headers: retryAfterHeader(retryAfter) });
    default:
      return new OciError('UNAVAILABLE', `${server} answered ${status}`, { status: 502 });
  }
}

function parseTokenResponse(body: Buffer, now: number): CachedToken | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null) return undefined;
  const { token, access_token, expires_in, issued_at } = json as Record<string, unknown>;
  const value = typeof token === 'string' && token !== '' ? token : access_token;
  if (typeof value !== 'string' || !TOKEN_SHAPE.test(value)) return undefined;
  const lifetime = typeof expires_in === 'number' && Number.isFinite(expires_in) && expires_in > 0 ? expires_in : DEFAULT_EXPIRES_IN_S;
  // A token issued earlier (a server that hands out cached tokens) expires earlier; an issue time
  // in our future is clock skew, and then our own clock is the safer start.
  const issued = typeof issued_at === 'string' ? Date.parse(issued_at) : Number.NaN;
  const start = Number.isFinite(issued) ? Math.min(issued, now) : now;
  return { token: value, expiresAt: start + lifetime * 1000 };
}

/** Lets one caller stop waiting for a shared promise without cancelling it for the others. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const settled = new AbortController();
    signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true, signal: settled.signal });
    void promise.then(resolve, reject).finally(() => settled.abort());
  });
}
