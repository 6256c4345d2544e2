/**
 * Renders every error below it as the OCI error envelope with the right status. Errors we
 * did not make on purpose become a bare `UNKNOWN` 500: their messages are for the log, not
 * for clients (they may carry paths or upstream details).
 */
import type { Middleware, ParameterizedContext } from 'koa';
import { ErrorCodes, isOciError, OciError, type ErrorCode } from '../../src/errors.js';

export interface OciErrorsOptions {
  /** Called for errors that are not the client's fault (status >= 500), for logging. */
  onError?: (err: unknown, ctx: ParameterizedContext) => void;
}

const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'UNKNOWN',
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'NAME_UNKNOWN',
  405: 'UNSUPPORTED',
  416: 'RANGE_INVALID',
  429: 'TOOMANYREQUESTS',
  503: 'UNAVAILABLE',
};

export function toOciError(err: unknown): OciError {
  if (isOciError(err)) return err;
  const e = err as { status?: unknown; expose?: unknown; message?: unknown };
  // koa and http-errors mark client errors as safe to show (`expose`); keep their status.
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    const code = STATUS_CODES[e.status] ?? 'UNKNOWN';
    const message = e.expose === true && typeof e.message === 'string' ? e.message : ErrorCodes[code].message;
    return new OciError(code, message, { status: e.status });
  }
  return new OciError('UNKNOWN', 'internal error', { cause: err });
}

export const ociErrors = ({ onError }: OciErrorsOptions = {}): Middleware =>
  async function ociErrors(ctx, next) {
    try {
      await next();
    } catch (err) {
      // Once the body has started there is no envelope to send: let koa cut the connection.
      if (ctx.headerSent || !ctx.writable) throw err;
      const oci = toOciError(err);
      if (oci.status >= 500) {
        if (onError) onError(err, ctx);
        else ctx.app.emit('error', err, ctx);
      }
      ctx.status = oci.status;
      ctx.remove('Content-Length');
      ctx.remove('Content-Range');
      for (const [k, v] of Object.entries(oci.headers)) ctx.set(k, v);
      ctx.set('Content-Type', 'application/json');
      ctx.body = JSON.stringify(oci.toJSON());
    }
  };
