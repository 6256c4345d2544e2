/**
 * Turns an upstream's unwanted answer into the OciError the mirror's own client should see.
 * The upstream's words survive only as `detail`, and only when they are a well-formed OCI error
 * body: cleaned of control characters and cut short, since they end up in our responses and logs.
 */
import { OciError, isOciError } from '../errors.js';
import type { OciErrorOptions } from '../errors.js';
import { readWithin } from './body.js';
import { retryAfterMs } from './rate-limit.js';
import type { UpstreamResponse } from './types.js';

const ERROR_BODY_LIMIT = 64 * 1024;
const MAX_ENTRIES = 4;
const MAX_MESSAGE = 256;

export interface UpstreamErrorDetail {
  /** The upstream's status code. */
  status: number;
  /** The upstream's own `errors[]`, code and message only. */
  errors: Array<{ code: string; message: string }>;
}

export async function upstreamError(
  res: UpstreamResponse,
  notFound: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN',
): Promise<OciError> {
  const detail = await readDetail(res);
  const options: OciErrorOptions = detail === undefined ? {} : { detail };
  const retryAfter = retryAfterHeader(res.headers['retry-after']);
  switch (res.status) {
    case 404:
      return new OciError(notFound, undefined, options);
    case 401:
      return new OciError('UNAUTHORIZED', 'upstream requires authentication', options);
    case 403:
      return new OciError('DENIED', 'upstream denied access', options);
    case 429:
      return new OciError('TOOMANYREQUESTS', 'upstream rate limit reached', { ...options, headers: retryAfter });
    case 503:
      return new OciError('UNAVAILABLE', 'upstream unavailable', { ...options, status: 503, headers: retryAfter });
    default:
      return new OciError('UNAVAILABLE', `upstream answered ${res.status}`, { ...options, status: 502 });
  }
}

/** Failures that say "not now" rather than "no": worth serving a stale copy over. */
export function isTransient(err: unknown): boolean {
  if (!isOciError(err)) return false;
  return err.code === 'UNAVAILABLE' || err.code === 'TOOMANYREQUESTS' || err.status >= 500;
}

async function readDetail(res: UpstreamResponse): Promise<UpstreamErrorDetail | undefined> {
  let body: Buffer | undefined;
  try {
    body = await readWithin(res.body, ERROR_BODY_LIMIT);
  } catch {
    return undefined; // a body that fails mid-way has nothing to say
  }
  if (body === undefined || body.length === 0) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const errors = (json as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return undefined;
  const entries: UpstreamErrorDetail['errors'] = [];
  for (const e of errors.slice(0, MAX_ENTRIES)) {
    const { code, message } = (e ?? {}) as { code?: unknown; message?: unknown };
    if (typeof code !== 'string' || !/^[A-Z][A-Z0-9_]{0,63}$/.test(code)) return undefined;
    entries.push({ code, message: typeof message === 'string' ? clean(message) : '' });
  }
  return { status: res.status, errors: entries };
}

function clean(text: string): string {
  const flat = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ').replace(/\s+/g, ' ').trim();
  const chars = Array.from(flat); // by code point, so that no surrogate pair is cut in half
  return chars.length > MAX_MESSAGE ? `${chars.slice(0, MAX_MESSAGE - 1).join('')}…` : flat;
}

/** `Retry-After` is passed on only when the back-off could read it too (delay-seconds or an HTTP-date). */
export function retryAfterHeader(value: string | string[] | undefined): Record<string, string> {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  return v !== undefined && retryAfterMs(v, Date.now()) !== undefined ? { 'Retry-After': v } : {};
}
