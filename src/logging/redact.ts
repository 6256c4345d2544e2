/**
 * Where credentials can sit in what the mirror logs. The paths are fixed here, at start-up,
 * and never taken from user input (pino's redaction compiles them once; a path from a request
 * would be both a cost and an attack surface).
 *
 * Every path is spelt out, with no leading wildcard: a `*.password` path makes pino walk every
 * key of every line, and a few dozen of them cost thirty times the line itself (measured:
 * ~100 µs against ~3 µs per access line). Spelt-out paths cost next to nothing, so the list
 * names the places the mirror and its libraries actually put such things.
 */

/** Header names that carry credentials, lower-case as node and undici give them. */
const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-registry-auth', 'x-mirror-replica-secret'];

/** Objects that carry `headers`: requests and responses, and errors about them. */
const WITH_HEADERS = ['', 'req.', 'res.', 'request.', 'response.', 'err.', 'err.request.', 'err.response.', 'err.cause.', 'error.'];

/** Keys whose value is a credential. */
const SECRET_KEYS = ['password', 'token', 'access_token', 'refresh_token', 'secretAccessKey', 'sessionToken', 'credentials', 'authorization'];

/** Objects that carry such keys: options, upstreams, storage settings, token bodies, errors. */
const WITH_SECRETS = ['', 'upstream.', 'options.', 'auth.', 'storage.', 'storage.blobs.', 'storage.meta.', 'body.', 'err.', 'error.'];

/** The config as a whole (logged at debug level at start-up). */
const CONFIG = [
  'config.upstreams[*].password',
  'config.upstreams[*].token',
  'config.upstreams[*].url',
  'config.upstreams[*].urls[*]',
  'config.upstreams[*].proxy',
  'config.auth.tokens[*].token',
  'config.admin.token',
  'config.replication.secret',
  'config.replication.redis',
  ...['', '.blobs', '.meta'].flatMap((s) => ['secretAccessKey', 'sessionToken', 'url', 'endpoint'].map((k) => `config.storage${s}.${k}`)),
];

/** Keys that hold URLs, which may carry `user:password@` (a Redis URL, a misconfigured upstream). */
const URLS = ['url', 'urls[*]', 'upstream.url', 'storage.url', 'storage.blobs.url', 'storage.meta.url', 'err.url'];

const key = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`);
const join = (prefix: string, k: string) => (k.startsWith('[') ? `${prefix.replace(/\.$/, '')}${k}` : `${prefix}${k}`);

export const REDACT_PATHS: readonly string[] = [
  ...WITH_HEADERS.flatMap((o) => SECRET_HEADERS.map((h) => join(`${o}headers.`, key(h)))),
  ...WITH_SECRETS.flatMap((o) => SECRET_KEYS.map((k) => `${o}${k}`)),
  ...CONFIG,
  ...URLS,
];

export const REDACTED = '[Redacted]';

const URL_KEYS = new Set(['url', 'urls', 'endpoint', 'proxy']);

/**
 * URLs keep everything but their credentials, so that logs still say where the mirror talks
 * to; anything else on a redacted path is replaced whole.
 */
export function censor(value: unknown, path: ReadonlyArray<string | symbol>): unknown {
  const last = path[path.length - 1];
  const owner = typeof last === 'string' && /^\d+$/.test(last) ? path[path.length - 2] : last;
  if (typeof owner !== 'string' || !URL_KEYS.has(owner)) return REDACTED;
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
