/**
 * OCI Distribution error codes, one table from code to HTTP status and message
 * (the way distribution's errcode/register.go does it), and one error class that
 * koa understands: it carries `status`, `expose` and `headers`.
 */

export const ErrorCodes = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 404, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, message: 'manifest tag did not match URI' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

export interface OciErrorOptions {
  /** Overrides the table's status where the spec allows more than one (e.g. 502 for UNAVAILABLE). */
  status?: number;
  detail?: unknown;
  headers?: Record<string, string>;
  cause?: unknown;
}

export class OciError extends Error {
  override readonly name = 'OciError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;
  /** koa sends `message` to the client only when `expose` is true; ours are written for clients. */
  readonly expose = true;

  constructor(code: ErrorCode, message?: string, options: OciErrorOptions = {}) {
    super(message ?? ErrorCodes[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? ErrorCodes[code].status;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }

  toJSON(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    const entry: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}

/** Prefer matching on `code` over `instanceof` (two copies of this package may meet in one process). */
export function isOciError(err: unknown): err is OciError {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'OciError' &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (err as { code: string }).code in ErrorCodes
  );
}
