import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Secret } from '../secrets.js';
import type { RateLimit, RateLimitOptions, RateLimitSnapshot } from './rate-limit.js';

export interface UpstreamCredentials {
  username: string;
  password: string;
}

export interface UpstreamTimeouts {
  /** TCP + TLS connect, ms. */
  connect?: number;
  /** Until the response headers arrive, ms. */
  headers?: number;
  /** Longest silence between two body chunks, ms. */
  body?: number;
}

/** TLS for the upstream's own origin (its URL's host), never for other hosts it sends the mirror to. */
export interface UpstreamTls {
  /** PEM CA certificates, in place of the system's. */
  ca?: string;
  /** PEM client certificate (and chain) and its key, for upstreams that ask for one. */
  cert?: string;
  key?: string;
  /** Sent as SNI and checked against the certificate instead of the URL's host. */
  servername?: string;
  /** Accepts any certificate. */
  insecureSkipVerify?: boolean;
}

export interface UpstreamOptions {
  /** The registry this upstream stands for, e.g. `docker.io`. */
  name: string;
  /** Where it is reached, e.g. `https://registry-1.docker.io`. */
  url: string;
  /** A function is asked on every request (a rotated password file); tokens earned with other credentials are not reused. */
  credentials?: Secret<UpstreamCredentials>;
  /** A static bearer token sent to the upstream's own origin on every request, instead of any handshake. */
  token?: Secret;
  timeouts?: UpstreamTimeouts;
  /** Connections per origin. */
  connections?: number;
  /**
   * A forward proxy for this upstream's connections (`http://proxy:3128`), `none` for direct ones,
   * or undefined: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` from the environment decide.
   */
  proxy?: string;
  tls?: UpstreamTls;
  /** Back-off after a 429 (see rate-limit.ts); a `RateLimit` itself is shared state, as between the URLs of one upstream. */
  rateLimit?: RateLimitOptions | RateLimit;
  /** Injected for tests; the upstream creates its own pools otherwise. */
  dispatcher?: Dispatcher;
}

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Upstream-side repository name; it decides the token scope (`repository:<name>:pull`). */
  repository: string;
  /** Path and query below the upstream's origin, e.g. `/v2/library/alpine/manifests/3.20`. */
  path: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /**
   * A client's own credentials, forwarded: they replace the configured ones for this request
   * (basic auth, or the token exchange), and tokens earned with them are cached apart.
   */
  credentials?: UpstreamCredentials;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string | string[] | undefined>;
  /** Must be consumed or destroyed by the caller, or the connection leaks. Empty for HEAD. */
  body: Readable;
  /** The URL that finally answered, after redirects. */
  url: string;
}

export interface Upstream {
  readonly name: string;
  readonly url: string;
  /**
   * Sends a request with authentication handled (Bearer handshake or basic), redirects
   * followed (never carrying `Authorization` to another origin). HTTP errors come back as
   * responses; only a failure to get any answer (refused, reset, timeout) rejects, with an
   * OciError UNAVAILABLE carrying the cause. While a 429 holds the upstream off, rejects with
   * TOOMANYREQUESTS and the wait as `Retry-After`, sending nothing.
   */
  request(req: UpstreamRequest): Promise<UpstreamResponse>;
  /** What the upstream last said about its rate limit, and any back-off; absent where it is not tracked. */
  rateLimit?(): RateLimitSnapshot;
  close(): Promise<void>;
}
