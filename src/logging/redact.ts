/**
 * Where credentials can sit in what the mirror logs. The paths are fixed here, at start-up,
 * and never taken from user input (pino's redaction compiles them once; a path from a request
 * would be both a cost and an attack surface).
 */

/** Header names that carry credentials, lower-case as node and undici give them. */
const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-registry-auth'];

/** Keys whose value is a credential wherever they appear (configs, options, token bodies). */
const SECRET_KEYS = ['password', 'token', 'access_token', 'refresh_token', 'secretAccessKey', 'sessionToken', 'credentials', 'authorization'];

/** Keys that hold URLs, which may carry `user:password@` (a Redis URL, a misconfigured upstream). */
const URL_KEYS = ['url', 'urls[*]'];

const key = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `["${k}"]`);

function atDepths(tail: string): string[] {
  // A path may start at the top of the log object or one to three levels down.
  const rel = tail.startsWith('[') ? tail : tail.slice(1);
  return [rel, `*${tail}`, `*.*${tail}`, `*.*.*${tail}`];
}

export const REDACT_PATHS: readonly string[] = [
  ...SECRET_HEADERS.flatMap((h) => atDepths(`.headers${key(h)}`)),
  ...SECRET_KEYS.flatMap((k) => atDepths(key(k))),
  // Upstream lists in a config: `config.upstreams[0].password` is four levels down.
  ...['password', 'token'].flatMap((k) => [`upstreams[*].${k}`, `*.upstreams[*].${k}`]),
  ...URL_KEYS.flatMap((k) => atDepths(`.${k}`)),
];

export const REDACTED = '[Redacted]';

/**
 * URLs keep everything but their password, so that logs still say where the mirror talks to;
 * anything else on a redacted path is replaced whole.
 */
export function censor(value: unknown, path: ReadonlyArray<string | symbol>): unknown {
  const last = path[path.length - 1];
  const isUrlKey = last === 'url' || (typeof last === 'string' && /^\d+$/.test(last) && path[path.length - 2] === 'urls');
  if (!isUrlKey) return REDACTED;
  if (typeof value !== 'string') return value;
  try {
    const url = new URL(value);
    if (!url.password && !url.username) return value;
    url.username = url.username ? REDACTED : '';
    url.password = url.password ? REDACTED : '';
    return url.toString();
  } catch {
    return value;
  }
}
