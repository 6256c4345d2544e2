/**
 * Runs a callback once a koa response has ended, whether it completed or the client went
 * away. Observers (events, access logs) report at the end so that they see the final status
 * and the real duration of a long blob transfer, not the moment the body was handed to koa.
 */
import type { ServerResponse } from 'node:http';
import type { ParameterizedContext } from 'koa';

export interface ResponseEnd {
  status: number;
  /** The response was sent in full (false: the client or the connection went away first). */
  complete: boolean;
  /** Body bytes sent; 0 for a response that did not complete, for HEAD and for bodiless statuses. */
  bytes: number;
  durationMs: number;
}

/** What one response's observers share: one `close` listener, one start, one report. */
interface Watch {
  started: number;
  callbacks: Array<(end: ResponseEnd) => void>;
}

/**
 * Kept on the response itself rather than in a WeakMap: every small request registers three
 * observers, and a property costs less than a WeakMap entry (which the GC must treat as an
 * ephemeron) on a path this hot.
 */
const WATCH = Symbol('onResponseEnd');
type Watched = ServerResponse & { [WATCH]?: Watch | undefined };

/**
 * Calls `callback` once the response has ended. `durationMs` is counted from the response's
 * first observer on (the request logger, in the server), the same for every observer.
 *
 * A server response always emits `close`, once it has finished or once its connection went away
 * first. Listening for that one event is a fraction of what `stream.finished` costs (half a dozen
 * listeners and its own bookkeeping), which was measurable on every small request.
 */
export function onResponseEnd(ctx: ParameterizedContext, callback: (end: ResponseEnd) => void): void {
  const res = ctx.res as Watched | undefined;
  // A context without a real response (a unit test's mock) has nothing to wait for.
  if (!res || typeof res.on !== 'function') {
    const started = performance.now();
    queueMicrotask(() => callback(endOf(ctx, true, started)));
    return;
  }
  const watching = res[WATCH];
  if (watching) {
    watching.callbacks.push(callback);
    return;
  }
  const started = performance.now();
  // Destroyed already: its `close` has been emitted or is on its way, too late to hear.
  if (res.destroyed) {
    process.nextTick(() => callback(endOf(ctx, res.writableFinished, started)));
    return;
  }
  const watch: Watch = { started, callbacks: [callback] };
  res[WATCH] = watch;
  const report = (complete: boolean) => {
    if (res[WATCH] !== watch) return;
    res[WATCH] = undefined;
    const end = endOf(ctx, complete, started);
    for (const cb of watch.callbacks) cb(end);
  };
  res.once('close', () => report(res.writableFinished));
  // A pipelined request queued behind another has no socket yet. Should its connection go away
  // before its turn, its response never emits `close`, but its request does; unreported, an
  // eviction pin on what it was about to serve would stay until a restart. Only such a request
  // gets the second listener: every other one has its socket from the start.
  if (!res.socket) {
    ctx.req?.once?.('close', () => {
      if (!res.socket && !res.writableFinished) report(false);
    });
  }
}

function endOf(ctx: ParameterizedContext, complete: boolean, started: number): ResponseEnd {
  return {
    status: ctx.res?.statusCode ?? ctx.status,
    complete,
    bytes: complete ? bodyBytes(ctx) : 0,
    durationMs: performance.now() - started,
  };
}

/**
 * The body length as declared. Counting the bytes as they pass would need another stream
 * stage on the hot path of every cache hit; a completed response sent exactly its length.
 */
function bodyBytes(ctx: ParameterizedContext): number {
  if (ctx.method === 'HEAD' || ctx.status === 204 || ctx.status === 304) return 0;
  const length = Number(ctx.res?.getHeader?.('content-length'));
  return Number.isFinite(length) && length > 0 ? length : 0;
}
