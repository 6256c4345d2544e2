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

/** The server refused the client certificate the mirror sent, or the lack of one. */
const CLIENT_CERT_REFUSED = /^ERR_SSL_.*ALERT_(BAD_CERTIFICATE|CERTIFICATE_|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE)/;
/** The mirror could not verify the server's certificate (OpenSSL's verify codes and Node's host check). */
const CERT_UNVERIFIED = /^(?!ERR_SSL_)(ERR_TLS_CERT_ALTNAME_INVALID|CERT_\w+|\w*SELF_SIGNED\w*|UNABLE_TO_\w+|INVALID_CA|\w+_CERT_\w*)$/;

export function shortReason(err: unknown): string {
  let code = codeOf(err);
  // A TLS alert kept by the connector says why the server closed (src/upstream/egress.ts).
  const cause = code === 'UND_ERR_SOCKET' ? codeOf((err as { cause?: unknown }).cause) : undefined;
  if (cause?.startsWith('ERR_SSL_')) code = cause;
  if (code === undefined) {
    // DOMExceptions from AbortSignal.timeout() and abort() carry numeric codes; their names say it.
    const name = (err as { name?: unknown } | null)?.name;
    return name === 'TimeoutError' ? 'timed out' : name === 'AbortError' ? 'aborted' : 'request failed';
  }
  if (code in REASONS) return REASONS[code]!;
  if (CLIENT_CERT_REFUSED.test(code)) return `TLS client certificate refused or missing (${code})`;
  if (CERT_UNVERIFIED.test(code)) return `TLS certificate verification failed (${code})`;
  if (/^(ERR_TLS_|ERR_SSL_)/.test(code)) return `TLS failure (${code})`;
  return code.startsWith('HPE_') ? 'malformed HTTP response' : code;
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  // Happy-eyeballs connects fail with an AggregateError of the per-address errors.
  const first = (err as { errors?: unknown } | null)?.errors;
  return Array.isArray(first) && first.length > 0 ? codeOf(first[0]) : undefined;
}
