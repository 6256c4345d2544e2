/**
 * One upstream registry over undici: a Pool for its own origin, an Agent for wherever it
 * redirects to (CDNs, presigned object-store URLs), authentication by the Docker Bearer handshake
 * or basic credentials, and redirects followed without ever carrying credentials off the origin.
 */
import { Agent, Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { OciError } from '../errors.js';
import { discard } from './body.js';
import { shortReason } from './reason.js';
import { basicAuthorization, createTokenSource } from './token.js';
import type { BearerChallenge } from './token.js';
import type { Upstream, UpstreamCredentials, UpstreamOptions, UpstreamRequest, UpstreamResponse } from './types.js';
import { parseWwwAuthenticate } from './www-authenticate.js';

const DEFAULT_TIMEOUTS = { connect: 10_000, headers: 30_000, body: 60_000 } as const;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
/** Never taken from the caller: the upstream decides what credentials go where. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'host']);
const USER_AGENT = 'koa-oci-mirror';

interface Credential {
  authorization: string;
  /** The Bearer token inside `authorization`, so that a refused one is not handed out again. */
  token?: string;
}

export function createUpstream(options: UpstreamOptions): Upstream {
  const { name, credentials } = options;
  const staticToken = options.token === undefined ? undefined : `Bearer ${options.token}`;
  const base = parseUpstreamUrl(options.url);
  const origin = base.origin;
  const prefix = base.pathname.replace(/\/+$/, '');
  const timeouts = { ...DEFAULT_TIMEOUTS, ...definedOnly(options.timeouts ?? {}) };

  const dispatcherOptions = {
    connections: options.connections ?? null,
    connect: { timeout: timeouts.connect },
    headersTimeout: timeouts.headers,
    bodyTimeout: timeouts.body,
  };
  const injected = options.dispatcher;
  const pool: Dispatcher = injected ?? new Pool(origin, dispatcherOptions);
  const elsewhere: Dispatcher = injected ?? new Agent(dispatcherOptions);
  const dispatcherFor = (o: string): Dispatcher => (o === origin ? pool : elsewhere);

  const tokens = createTokenSource({
    name,
    upstream: base,
    credentials,
    dispatcherFor,
    timeout: timeouts.headers,
    userAgent: USER_AGENT,
  });
  /** The Bearer realm this upstream last challenged with: it lets cached tokens go out up front. */
  let bearer: BearerChallenge | undefined;
  /** Set once the upstream asked for Basic: from then on credentials go out up front. */
  let basicWanted = false;

  function upfront(scope: string | undefined, creds: UpstreamCredentials | undefined): Credential | undefined {
    if (staticToken !== undefined) return { authorization: staticToken };
    if (bearer !== undefined) {
      const token = tokens.cached(bearer, scope, creds);
      if (token !== undefined) return { authorization: `Bearer ${token}`, token };
    }
    return basicWanted && creds !== undefined ? { authorization: basicAuthorization(creds) } : undefined;
  }

  async function dispatch(url: URL, req: UpstreamRequest, authorization: string | undefined): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT };
    for (const [k, v] of Object.entries(req.headers ?? {})) {
      const key = k.toLowerCase();
      if (!CREDENTIAL_HEADERS.has(key)) headers[key] = v;
    }
    if (authorization !== undefined) headers.authorization = authorization;
    try {
      return await dispatcherFor(url.origin).request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: req.method,
        headers,
        signal: req.signal,
        headersTimeout: timeouts.headers,
        bodyTimeout: timeouts.body,
      });
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      // A request undici will not send (a header value with a newline) is the caller's bug, not an outage.
      if ((err as { code?: unknown }).code === 'UND_ERR_INVALID_ARG') throw err;
      throw new OciError('UNAVAILABLE', `upstream ${name} unreachable: ${shortReason(err)}`, { cause: err });
    }
  }

  /** Sends, following redirects; `authorization` goes to the upstream's own origin and nowhere else. */
  async function send(req: UpstreamRequest, start: URL, authorization: string | undefined): Promise<UpstreamResponse> {
    let url = start;
    for (let hop = 0; ; hop++) {
      const res = await dispatch(url, req, url.origin === origin ? authorization : undefined);
      const location = REDIRECT_STATUSES.has(res.statusCode) ? firstHeader(res.headers.location) : undefined;
      if (location === undefined) {
        return { status: res.statusCode, headers: res.headers, body: res.body, url: url.href };
      }
      await discard(res.body);
      if (hop === MAX_REDIRECTS) {
        throw new OciError('UNAVAILABLE', `upstream ${name}: more than ${MAX_REDIRECTS} redirects`, { status: 502 });
      }
      url = redirectTarget(location, url, name);
    }
  }

  async function request(req: UpstreamRequest): Promise<UpstreamResponse> {
    req.signal?.throwIfAborted();
    if (!req.path.startsWith('/')) throw new TypeError(`upstream path must start with "/": ${req.path}`);
    // Concatenated, not resolved: a path like `//elsewhere/x` must stay on this origin.
    const url = new URL(origin + prefix + req.path);
    const scope = req.repository === '' ? undefined : `repository:${req.repository}:pull`;

    // A client's forwarded credentials stand in for the configured ones, for this request only.
    const creds = req.credentials ?? credentials;
    const sent = upfront(scope, creds);
    const res = await send(req, url, sent?.authorization);
    // A 401 from a redirect target is that host's business; only the upstream's own challenges are answered.
    // A static token is all there is: a 401 to it is the answer.
    if (res.status !== 401 || new URL(res.url).origin !== origin || staticToken !== undefined) return res;

    const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
    const challenge = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    let retry: string;
    if (challenge !== undefined) {
      const { realm, service, error, scope: wanted } = challenge.params;
      const realmed: BearerChallenge = { realm: realm!, service };
      await discard(res.body);
      const token = await tokens.get(realmed, error === 'insufficient_scope' && wanted ? wanted : scope, req.signal, sent?.token, creds);
      bearer = realmed;
      retry = `Bearer ${token}`;
    } else if (creds !== undefined && sent?.authorization === undefined && challenges.some((c) => c.scheme === 'basic')) {
      await discard(res.body);
      basicWanted = true;
      retry = basicAuthorization(creds);
    } else {
      return res;
    }
    // One retry; whatever it answers, a second 401 included, is the answer.
    return send(req, url, retry);
  }

  return {
    name,
    url: options.url,
    request,
    async close() {
      tokens.close();
      if (injected === undefined) await Promise.all([pool.close(), elsewhere.close()]);
    },
  };
}

function parseUpstreamUrl(raw: string): URL {
  const url = new URL(raw);
  // Checked first: the messages below quote the URL.
  if (url.username !== '' || url.password !== '') throw new TypeError('upstream URL must not carry credentials; use `credentials`');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`upstream URL must be http(s): ${raw}`);
  if (url.search !== '' || url.hash !== '') throw new TypeError(`upstream URL must not have a query or fragment: ${raw}`);
  return url;
}

function redirectTarget(location: string, from: URL, name: string): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new OciError('UNAVAILABLE', `upstream ${name} redirected to an invalid location`, { status: 502 });
  }
  if (next.protocol !== 'https:' && next.protocol !== 'http:') {
    throw new OciError('UNAVAILABLE', `upstream ${name} redirected to a non-http(s) location`, { status: 502 });
  }
  next.hash = '';
  return next;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function definedOnly<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
