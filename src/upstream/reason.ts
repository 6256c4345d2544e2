/**
 * A few words on why no HTTP answer came, for error messages. Matches on `code` (undici's advice
 * in docs/api/Errors.md), never on message text, and never repeats a message, which could carry a
 * URL with a presigned query.
 */
const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_DESTROYED: 'connection closed',
  ENOTFOUND: 'DNS lookup failed',
  EAI_AGAIN: 'DNS lookup failed',
  EAI_FAIL: 'DNS lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connect timeout',
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'body timeout',
  UND_ERR_HEADERS_OVERFLOW: 'response headers too large',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'response length mismatch',
  HPE_INVALID_CONSTANT: 'malformed HTTP response',
};

export function shortReason(err: unknown): string {
  const code = codeOf(err);
  if (code === undefined) {
    // DOMExceptions from AbortSignal.timeout() and abort() carry numeric codes; their names say it.
    const name = (err as { name?: unknown } | null)?.name;
    return name === 'TimeoutError' ? 'timed out' : name === 'AbortError' ? 'aborted' : 'request failed';
  }
  if (code in REASONS) return REASONS[code]!;
  if (/^(ERR_TLS_|CERT_|ERR_SSL_)|_CERT|SELF_SIGNED/.test(code)) return `TLS failure (${code})`;
  return code.startsWith('HPE_') ? 'malformed HTTP response' : code;
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  // Happy-eyeballs connects fail with an AggregateError of the per-address errors.
  const first = (err as { errors?: unknown } | null)?.errors;
  return Array.isArray(first) && first.length > 0 ? codeOf(first[0]) : undefined;
}
