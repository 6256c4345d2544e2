/**
 * One child logger per request, with its id bound once (and its upstream and repository once
 * they are known), and one access line when the response has ended.
 */
import type { Context, Middleware, ParameterizedContext } from 'koa';
import type { Logger } from 'pino';
import { onResponseEnd } from '../shared/response-end.js';
import { clientAddress } from '../../src/logging/client-address.js';
import { requestIdFrom } from '../../src/logging/request-id.js';
import '../shared/state.js';

declare module 'koa' {
  interface DefaultState {
    /** Set by `requestLogger`: the request's id, also sent back in its header. */
    reqId?: string;
    /** Made on demand by `requestLog(ctx)`, which binds `reqId`, upstream and repository: read it through that. */
    log?: Logger;
  }
}

export interface RequestLoggerOptions {
  logger: Logger;
  /** Taken from the request when sane, else generated; always sent back. */
  header?: string;
  /**
   * Routine requests (probes, scrapes, the status page polling) whose access lines go at
   * `debug` while they succeed, so that a kubelet or an open status page does not fill the log
   * at `info`. A failing one is logged at `info` like any other.
   */
  routine?: (ctx: Context) => boolean;
  /** Proxies whose X-Forwarded-For names the client (see `clientAddress`); none by default. */
  trustedProxies?: readonly string[];
}

/** Long enough for any real client's name and version, short enough that a header cannot flood the log. */
const MAX_USER_AGENT = 256;

export const requestLogger = ({ logger, header = 'X-Request-Id', routine, trustedProxies = [] }: RequestLoggerOptions): Middleware => {
  const addressOf = clientAddress(trustedProxies);
  return async function requestLogger(ctx, next) {
    const reqId = requestIdFrom(ctx.get(header) || undefined);
    ctx.state.reqId = reqId;
    // No child logger yet: most requests log only their access line, and a child costs more
    // than the line. `requestLog` makes one when something else is logged.
    (ctx.state as Based)[BASE] = logger;
    ctx.set(header, reqId);
    onResponseEnd(ctx, (end) => {
      const debug = end.status < 400 && routine?.(ctx);
      // Before the line is built: where access lines are off, a request costs no log work.
      if (!logger.isLevelEnabled(debug ? 'debug' : 'info')) return;
      // Who pulled what: the client, the name it proved (never a secret), what it said it is, and the digest served.
      const client = ctx.state.client;
      const line = {
        method: ctx.method,
        // The path only: a query may carry anything a client put there.
        path: ctx.path,
        status: end.status,
        bytes: end.bytes,
        durationMs: Math.round(end.durationMs),
        cache: ctx.response.get('X-Mirror-Cache') || undefined,
        digest: end.status < 400 ? ctx.response.get('Docker-Content-Digest') || undefined : undefined,
        aborted: end.complete ? undefined : true,
        client: addressOf(ctx.req.socket?.remoteAddress, ctx.get('X-Forwarded-For') || undefined),
        user: client?.name ?? client?.basic?.username,
        userAgent: ctx.get('User-Agent').slice(0, MAX_USER_AGENT) || undefined,
      };
      // The same fields, in the same order, as a child bound with them would write. Assigned, not
      // spread: a spread followed by more properties is slow on node 20 (see eslint.config.js).
      const log = ctx.state.log ? requestLog(ctx, logger) : logger;
      const bound = ctx.state.log ? line : Object.assign(bindings(ctx, reqId), line);
      if (debug) log.debug(bound, 'request');
      else log.info(bound, 'request');
    });
    await next();
  };
};

/**
 * The logger `requestLogger` was given, kept on the request's state for the child made on demand
 * (a property, not a WeakMap entry: cheaper for the GC on every request).
 */
const BASE = Symbol('requestLogger');
type Based = { [BASE]?: Logger };

/** Loggers that already carry upstream and repository, so that they are bound once per request. */
const targeted = new WeakSet<Logger>();

function bindings(ctx: ParameterizedContext, reqId: string): Record<string, string> {
  const target = ctx.state.target;
  return target ? { reqId, upstream: target.upstream.name, repo: target.repository } : { reqId };
}

/**
 * The request's logger: with `reqId`, and with `upstream` and `repo` from the moment routing has
 * chosen them. `fallback` serves requests that did not pass through `requestLogger`.
 */
export function requestLog(ctx: ParameterizedContext, fallback: Logger): Logger {
  const log = ctx.state.log;
  const reqId = ctx.state.reqId;
  if (reqId === undefined) return log ?? fallback;
  const target = ctx.state.target;
  if (log && (!target || targeted.has(log))) return log;
  const bound = ((ctx.state as Based)[BASE] ?? fallback).child(bindings(ctx, reqId));
  if (target) targeted.add(bound);
  ctx.state.log = bound;
  return bound;
}
