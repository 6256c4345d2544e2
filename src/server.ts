/**
 * A standalone mirror: koa, the mirror middleware and liveness routes on one HTTP server,
 * with a shutdown that stops accepting, lets fills in flight finish (bounded) and then
 * closes what is left.
 */
import { once } from 'node:events';
import { STATUS_CODES, type Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import Koa from 'koa';
import type { Logger } from 'pino';
import { requestLog, requestLogger } from '../middleware/request-logger/index.js';
import { adminApi } from '../middleware/admin-api/index.js';
import { isOciError, OciError } from './errors.js';
import { parseListen, type MirrorConfig } from './config.js';
import { metricsEndpoint } from '../middleware/metrics-endpoint/index.js';
import { requireClient } from '../middleware/mirror-auth/index.js';
import { statusPage } from '../middleware/status-page/index.js';
import { createReadiness } from './health/index.js';
import { createListener, RESPONSE_BUFFER } from './listener/index.js';
import { createLogger } from './logging/index.js';
import { createMetrics, type Metrics } from './metrics/index.js';
import { createMirror, type Mirror, type MirrorOptions } from '../middleware/mirror/index.js';
import { adminToken, type OnSecretReload } from '../middleware/mirror/config-files.js';
import { createStatus, type Status } from './status/index.js';
import { FILLS_PATH } from './replication/index.js';
import { missingServerFlags } from './node-flags.js';
import type { Secret } from './secrets.js';

export interface ServerOptions extends MirrorOptions {
  /** Defaults to `createLogger()`, which redacts credentials; a logger of your own should use its `redact`. */
  logger?: Logger;
  /**
   * A listening loopback server, without a handler, on which to answer the fill relay only
   * (`/_mirror/fills/`): a cluster worker's, which its sibling workers stream its fills from.
   */
  relayServer?: Server;
}

export interface MirrorServer {
  readonly url: string;
  /** `host:port`, the form image references use. */
  readonly host: string;
  readonly port: number;
  /** An `https.Server` with `tls` in the config. */
  readonly server: Server | HttpsServer;
  readonly mirror: Mirror;
  /** Served at `/metrics`. */
  readonly metrics: Metrics;
  /** Served at `/_mirror/`; absent with `status.enabled: false`. */
  readonly status: Status | undefined;
  readonly app: Koa;
  /** Stops accepting, waits up to `graceMs` for fills in flight, then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

/** Paths that probes, scrapers and an open status page ask for again and again. */
const ROUTINE = new Set(['/healthz', '/readyz', '/metrics', '/_mirror/status.json']);

/** Errors that only say a client went away; not worth a log line. */
const CLIENT_GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);

/** How long a connection refused by the parser stays open for the client to read the answer. */
const LINGER_MS = 2_000;

/** What Node's parser refuses with: a status other than 400 where one says more. */
const PARSER_REFUSALS: Partial<Record<string, [status: number, message: string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'request header fields too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request not received in time'],
};

/**
 * Answers a request Node's HTTP parser refused before koa saw it, in the OCI error envelope
 * as everything else the mirror refuses, then closes the connection: after a parse error
 * nothing more can be read from it.
 */
function refuseUnparsed(err: NodeJS.ErrnoException, socket: Duplex): void {
  // The response to an earlier request on this connection may be under way: bytes of ours would corrupt it.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, message] = PARSER_REFUSALS[err.code ?? ''] ?? [400, 'malformed request'];
  const body = JSON.stringify(new OciError('UNKNOWN', message, { status }).toJSON());
  const head = [`HTTP/1.1 ${status} ${STATUS_CODES[status]}`, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  // Not destroyed at once: closing on request bytes still unread sends a reset, which can make
  // the client drop the answer unread. A client that never closes its side is cut after a while.
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

export async function startServer(config: MirrorConfig, options: ServerOptions = {}): Promise<MirrorServer> {
  const logger = options.logger ?? createLogger();
  // Redaction keeps the credentials in it out of the line.
  logger.debug({ config }, 'config');
  const onSecretReload = options.onSecretReload ?? secretReloadLog(logger);
  const admin = adminToken(config.admin, onSecretReload);
  // Before the mirror: a certificate that cannot be read stops the start before anything runs.
  const listener = createListener(config.tls, { highWaterMark: RESPONSE_BUFFER, logger });
  const mirror = await loggedMirror(config, { ...options, onSecretReload }, logger).catch((err: unknown) => {
    listener.close();
    throw err;
  });
  for (const u of config.upstreams) {
    // Said at every start, so that a lab setting left in production does not go unnoticed.
    if (u.tls?.insecureSkipVerify) logger.warn({ upstream: u.name }, 'upstream TLS certificates are not verified (tls.insecureSkipVerify)');
  }
  const { app, metrics, status } = appFor(mirror, config, logger, admin);

  const { server } = listener;
  server.on('request', app.callback());
  const { relayServer } = options;
  relayServer?.on('request', relayApp(mirror, logger).callback());
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Only the code: the error carries the raw request bytes, credentials and all.
    logger.debug({ code: err.code }, 'request refused by the HTTP parser');
    refuseUnparsed(err, socket);
  });
  // Large layers over slow links: never cut a response for taking long.
  server.requestTimeout = 0;
  const { host, port } = parseListen(config.listen)!;
  // Without a host, Node binds `::` and, with ipv6Only false, takes IPv4 on the same socket; on a
  // machine without IPv6 it falls back to 0.0.0.0 by itself. `:5000` thus means every interface.
  server.listen({ port, host, ipv6Only: false });
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const hostPort = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  // A server started without node's flags for one works, with more GC work on cold pulls: say so where the operator looks.
  const missingNodeFlags = missingServerFlags(process.execArgv);
  logger.info(
    { listen: hostPort, upstreams: config.upstreams.map((u) => u.name), storage: config.storage.type, ...(missingNodeFlags.length ? { missingNodeFlags } : {}) },
    'mirror listening',
  );

  let closing: Promise<void> | undefined;
  return {
    url: `${listener.scheme}://${hostPort}`,
    host: hostPort,
    port: address.port,
    server,
    mirror,
    metrics,
    status,
    app,
    close(graceMs = config.shutdownGrace) {
      closing ??= (async () => {
        listener.close();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // Open until the fills are done: a sibling may be relaying one of them.
        await mirror.close(graceMs);
        relayServer?.close();
        relayServer?.closeAllConnections();
        status?.close();
        metrics.stop();
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}

/** A rotated secret file, named by its key and path (never its content). */
function secretReloadLog(logger: Logger): OnSecretReload {
  return ({ key, path, error }) => {
    if (error === undefined) logger.info({ key, file: path }, 'secret file changed: its new content is in use');
    else logger.warn({ key, file: path, error }, 'secret file changed but cannot be used: its last good content stays in use');
  };
}

/** The mirror, with its failures logged at the level they deserve. */
async function loggedMirror(config: MirrorConfig, options: ServerOptions, logger: Logger): Promise<Mirror> {
  const mirror = createMirror(config, {
    ...options,
    onError:
      options.onError ??
      ((err, ctx) => {
        // An upstream that is down or rate-limiting is the weather, not a fault of the mirror.
        const level = isOciError(err) && (err.code === 'UNAVAILABLE' || err.code === 'TOOMANYREQUESTS') ? 'warn' : 'error';
        requestLog(ctx, logger)[level]({ err, method: ctx.method, path: ctx.path }, 'request failed');
      }),
    onBackgroundError: options.onBackgroundError ?? ((err, task) => logger.error({ err, task }, 'background task failed')),
  });
  await mirror.ready;
  // Once per fill, however many clients waited on it: the request lines show only their 403 or 507.
  mirror.events.on('fill:end', (e) => {
    if (e.refused) logger.warn({ digest: e.digest, reason: e.refused.reason, bytes: e.bytes }, e.refused.message);
  });
  // Once per back-off: the requests it turns away each have their own line already.
  mirror.events.on('upstream:backoff', (e) => logger.warn(e, `upstream ${e.upstream} is rate limiting; no requests to it for ${e.seconds}s`));
  return mirror;
}

/**
 * `/healthz` and `/readyz`, for GET and HEAD: two paths are a switch, not a router (@koa/router
 * costs about 3 MB of memory, and a match on every request).
 */
function liveness(readiness: ReturnType<typeof createReadiness>): Koa.Middleware {
  return async function liveness(ctx, next) {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
    } else if (ctx.path === '/readyz') {
      const report = await readiness.check();
      ctx.status = report.ready ? 200 : 503;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = report;
    } else {
      return next();
    }
  };
}

/** The fill relay and nothing else: the relay socket has no business with pulls, probes or admin. */
function relayApp(mirror: Mirror, logger: Logger): Koa {
  const app = new Koa();
  // Most often the sibling stopped reading (its clients left); it resumes or fetches on its own.
  app.on('error', (err: unknown) => logger.debug({ err }, 'fill relay response failed'));
  app.use(async function relayOnly(ctx, next) {
    if (ctx.path.startsWith(FILLS_PATH)) return mirror(ctx, next);
  });
  return app;
}

/** The koa app: probes, metrics, the status page and admin API when enabled, then the mirror. */
function appFor(mirror: Mirror, config: MirrorConfig, logger: Logger, adminToken: Secret | undefined): { app: Koa; metrics: Metrics; status: Status | undefined } {
  const app = new Koa();
  app.on('error', (err: NodeJS.ErrnoException, ctx?: Koa.Context) => {
    if (err.code && CLIENT_GONE.has(err.code)) return;
    (ctx ? requestLog(ctx, logger) : logger).error({ err }, 'response failed');
  });
  app.use(
    requestLogger({ logger, trustedProxies: config.trustedProxies, routine: (ctx) => ROUTINE.has(ctx.path) || ctx.path.startsWith('/_mirror/assets/') }),
  );
  app.use(liveness(createReadiness(mirror, { onProbeError: (err) => logger.warn({ err }, 'storage probe failed') })));
  const metrics = createMetrics(mirror, { processMetrics: true });
  app.use(metricsEndpoint(metrics));
  const { enabled: statusEnabled, sampleInterval, points } = config.status;
  const status = statusEnabled
    ? createStatus(mirror, metrics, { sampleInterval, points, onError: (err) => logger.warn({ err }, 'status sample failed') })
    : undefined;
  if (status) app.use(statusPage({ status, authorize: mirror.identify && requireClient({ identify: mirror.identify }) }));
  if (adminToken !== undefined) app.use(adminApi({ mirror, token: adminToken }));
  app.use(mirror);
  return { app, metrics, status };
}
