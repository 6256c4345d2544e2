/**
 * One upstream registry over undici: a Pool for its own origin, an Agent for wherever it
 * redirects to (CDNs, presigned object-store URLs), authentication by the Docker Bearer handshake
 * or basic credentials, and redirects followed without ever carrying credentials off the origin.
 */
import type { Dispatcher } from 'undici';
import { OciError } from '../errors.js';
import { UpstreamAuthorization } from './authorization.js';
import { discard } from './body.js';
import { createEgress } from './egress.js';
import { RateLimit } from './rate-limit.js';
import { shortReason } from './reason.js';
import { currentSecret } from '../secrets.js';
import { createTokenSource } from './token.js';
import type { Upstream, UpstreamCredentials, UpstreamOptions, UpstreamRequest, UpstreamResponse } from './types.js';

const DEFAULT_TIMEOUTS = { connect: 10_000, headers: 30_000, body: 60_000 } as const;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
/** Never taken from the caller: the upstream decides what credentials go where. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'host']);
const USER_AGENT = 'koa-oci-mirror';

/** How one upstream's requests travel: its origin and path prefix, its pools and their timeouts. */
interface Transport {
  name: string;
  origin: string;
  /** The upstream URL's path, without a trailing `/`; requests go below it. */
  prefix: string;
  timeouts: { connect: number; headers: number; body: number };
  dispatcherFor(origin: string): Dispatcher;
}

export function createUpstream(options: UpstreamOptions): Upstream {
  const { name } = options;
  const credentials = () => (options.credentials === undefined ? undefined : currentSecret(options.credentials));
  const base = parseUpstreamUrl(options.url);
  const timeouts = { ...DEFAULT_TIMEOUTS, ...definedOnly(options.timeouts ?? {}) };
  const injected = options.dispatcher;
  const { own: pool, other: elsewhere } = injected
    ? { own: injected, other: injected }
    : createEgress({ origin: base.origin, proxy: options.proxy, tls: options.tls, connections: options.connections ?? null, timeouts });
  const dispatcherFor = (o: string): Dispatcher => (o === base.origin ? pool : elsewhere);
  const transport: Transport = { name, origin: base.origin, prefix: base.pathname.replace(/\/+$/, ''), timeouts, dispatcherFor };

  const limits = options.rateLimit instanceof RateLimit ? options.rateLimit : new RateLimit(name, options.rateLimit);
  // Credentials go with each call, as they are then: a password file may have been rotated.
  const tokens = createTokenSource({ name, upstream: base, dispatcherFor, timeout: timeouts.headers, userAgent: USER_AGENT, rateLimit: limits });
  const auth = new UpstreamAuthorization(tokens, options.token);
  return {
    name,
    url: options.url,
    async request(req) {
      limits.check();
      const res = await request(transport, auth, credentials, req);
      // A redirect target's limits (a CDN's) are its own business, as its 401s are.
      if (new URL(res.url).origin === transport.origin) limits.observe(res.status, res.headers);
      return res;
    },
    rateLimit: () => limits.snapshot(),
    async close() {
      tokens.close();
      if (injected === undefined) await Promise.all([pool.close(), elsewhere.close()]);
    },
  };
}

async function request(
  transport: Transport,
  auth: UpstreamAuthorization,
  configured: () => UpstreamCredentials | undefined,
  req: UpstreamRequest,
): Promise<UpstreamResponse> {
  req.signal?.throwIfAborted();
  if (!req.path.startsWith('/')) throw new TypeError(`upstream path must start with "/": ${req.path}`);
  // Concatenated, not resolved: a path like `//elsewhere/x` must stay on this origin.
  const url = new URL(transport.origin + transport.prefix + req.path);
  const scope = req.repository === '' ? undefined : `repository:${req.repository}:pull`;

  // A client's forwarded credentials stand in for the configured ones, for this request only.
  const creds = req.credentials ?? configured();
  const sent = auth.upfront(scope, creds);
  const res = await send(transport, req, url, sent?.authorization);
  // A 401 from a redirect target is that host's business; only the upstream's own challenges are answered.
  if (res.status !== 401 || new URL(res.url).origin !== transport.origin || auth.fixed) return res;
  const retry = await auth.answer(res, scope, creds, sent, req.signal);
  // One retry; whatever it answers, a second 401 included, is the answer.
  return retry === undefined ? res : send(transport, req, url, retry);
}

/** Sends, following redirects; `authorization` goes to the upstream's own origin and nowhere else. */
async function send(transport: Transport, req: UpstreamRequest, start: URL, authorization: string | undefined): Promise<UpstreamResponse> {
  const { name, origin } = transport;
  let url = start;
  for (let hop = 0; ; hop++) {
    const res = await dispatch(transport, url, req, url.origin === origin ? authorization : undefined);
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

async function dispatch(
  { name, timeouts, dispatcherFor }: Transport,
  url: URL,
  req: UpstreamRequest,
  authorization: string | undefined,
): Promise<Dispatcher.ResponseData> {
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
