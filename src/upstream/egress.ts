/**
 * How one upstream's connections leave the machine: directly, or through a forward proxy (the
 * upstream's own `proxy`, else `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` from the environment,
 * lower case first, as undici and curl read them). Without either, the dispatchers are the plain
 * pool and agent they always were.
 */
import { Agent, EnvHttpProxyAgent, Pool, ProxyAgent, type Dispatcher } from 'undici';

export interface EgressOptions {
  /** The upstream's own origin: it gets a pool of its own. */
  origin: string;
  /** A proxy URL, `none` (direct, whatever the environment says), or undefined: the environment decides. */
  proxy?: string;
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
  const connect = { timeout: timeouts.connect };
  const fromEnvironment = proxy === undefined && PROXY_VARIABLES.some((k) => process.env[k]);
  if (proxy === 'none' || (proxy === undefined && !fromEnvironment)) {
    return { own: new Pool(origin, { ...common, connect }), other: new Agent({ ...common, connect }) };
  }
  // CONNECT for plain-http upstreams too (undici's default, said out loud): the upstream's
  // Authorization then travels inside the tunnel, a byte stream the proxy relays and never parses.
  const tunnelled = { ...common, proxyTunnel: true, requestTls: connect, proxyTls: connect };
  if (proxy === undefined) {
    // `connect` serves the hosts NO_PROXY exempts, `requestTls` the ones tunnelled.
    return { own: new EnvHttpProxyAgent({ ...tunnelled, connect }), other: new EnvHttpProxyAgent({ ...tunnelled, connect }) };
  }
  return { own: new ProxyAgent({ ...tunnelled, uri: proxy }), other: new ProxyAgent({ ...tunnelled, uri: proxy }) };
}
