/**
 * How one upstream's connections leave the machine: directly, or through a forward proxy (the
 * upstream's own `proxy`, else `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` from the environment,
 * lower case first, as undici and curl read them). Without either, the dispatchers are the plain
 * pool and agent they always were.
 */
import type { buildConnector as BuildConnector, Dispatcher } from 'undici';
import { Agent, buildConnector, EnvHttpProxyAgent, Pool, ProxyAgent } from './undici.js';
import type { UpstreamTls } from './types.js';

export interface EgressOptions {
  /** The upstream's own origin: it gets a pool of its own. */
  origin: string;
  /** A proxy URL, `none` (direct, whatever the environment says), or undefined: the environment decides. */
  proxy?: string;
  /** For the upstream's own origin only. */
  tls?: UpstreamTls;
  connections: number | null;
  timeouts: { connect: number; headers: number; body: number };
}

export interface Egress {
  /** For the upstream's own origin. */
  own: Dispatcher;
  /** For everywhere else it sends the mirror: token realms on other hosts, redirect targets. */
  other: Dispatcher;
}

const PROXY_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'];

export function createEgress(options: EgressOptions): Egress {
  const { origin, proxy, connections, timeouts } = options;
  const common = { connections, headersTimeout: timeouts.headers, bodyTimeout: timeouts.body };
  const plain = { timeout: timeouts.connect };
  const own = { ...plain, ...tlsConnectOptions(options.tls) };
  const fromEnvironment = proxy === undefined && PROXY_VARIABLES.some((k) => process.env[k]);
  if (proxy === 'none' || (proxy === undefined && !fromEnvironment)) {
    return { own: new Pool(origin, { ...common, connect: keepingTlsAlerts(own) }), other: new Agent({ ...common, connect: plain }) };
  }
  // CONNECT for plain-http upstreams too (undici's default, said out loud): the upstream's
  // Authorization then travels inside the tunnel, a byte stream the proxy relays and never parses.
  const tunnelled = { ...common, proxyTunnel: true, proxyTls: plain };
  if (proxy === undefined) {
    // `connect` serves the hosts NO_PROXY exempts, `requestTls` the ones tunnelled.
    return {
      own: new EnvHttpProxyAgent({ ...tunnelled, connect: own, requestTls: own }),
      other: new EnvHttpProxyAgent({ ...tunnelled, connect: plain, requestTls: plain }),
    };
  }
  return { own: new ProxyAgent({ ...tunnelled, uri: proxy, requestTls: own }), other: new ProxyAgent({ ...tunnelled, uri: proxy, requestTls: plain }) };
}

/** Node's TLS options for the upstream's own origin; nothing at all when none are set. */
function tlsConnectOptions(tls: UpstreamTls | undefined): Record<string, unknown> {
  if (tls === undefined) return {};
  const { ca, cert, key, servername, insecureSkipVerify = false } = tls;
  const set = Object.entries({ ca, cert, key, servername }).filter(([, v]) => v !== undefined);
  return { ...Object.fromEntries(set), ...(insecureSkipVerify ? { rejectUnauthorized: false } : {}) };
}

/**
 * undici's own connector, except that a TLS alert the server closes the connection with is kept
 * as the cause of the "other side closed" (UND_ERR_SOCKET) that undici reports in its place. A
 * server that wants a client certificate says so with such an alert after a TLS 1.3 handshake,
 * and without it the error would not say why.
 */
function keepingTlsAlerts(options: BuildConnector.BuildOptions): BuildConnector.connector {
  const connect = buildConnector(options);
  return (opts, callback) =>
    connect(opts, (...args) => {
      const socket = args[1];
      let alert: Error | undefined;
      socket?.on('error', (err: NodeJS.ErrnoException & { cause?: unknown }) => {
        if (err.code?.startsWith('ERR_SSL_')) alert = err;
        else if (alert !== undefined && err.code === 'UND_ERR_SOCKET') err.cause ??= alert;
      });
      callback(...args);
    });
}
