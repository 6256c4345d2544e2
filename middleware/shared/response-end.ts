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

/**
 * One watch per response, however many observers. A server response always emits `close`, once
 * it has finished or once its connection went away first; listening for that one event is a
 * fraction of what `stream.finished` costs (half a dozen listeners and its own close bookkeeping),
 * which was measurable on every small request.
 */
const watchers = new WeakMap<ServerResponse, Array<(complete: boolean) => void>>();

export function onResponseEnd(ctx: ParameterizedContext, callback: (end: ResponseEnd) => void): void {
  const started = performance.now();
  const res: ServerResponse | undefined = ctx.res;
  const report = (complete: boolean) =>
    callback({
      status: res?.statusCode ?? ctx.status,
      complete,
      bytes: complete ? bodyBytes(ctx) : 0,
      durationMs: performance.now() - started,
    });
  if (!res || typeof res.on !== 'function') {
    queueMicrotask(() => report(true));
    return;
  }
  let callbacks = watchers.get(res);
  if (!callbacks) {
    // Destroyed already: its `close` has been emitted or is on its way, too late to hear.
    if (res.destroyed) {
      process.nextTick(() => report(res.writableFinished));
      return;
    }
    const list: Array<(complete: boolean) => void> = [];
    watchers.set(res, (callbacks = list));
    res.once('close', () => {
      watchers.delete(res);
      const complete = res.writableFinished;
      for (const cb of list) cb(complete);
    });
  }
  callbacks.push(report);
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
