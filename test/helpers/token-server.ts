/**
 * A Docker token server for end-to-end tests (distribution's docs/spec/auth/token.md and jwt.md):
 * `GET /token?service=…&scope=repository:<name>:pull[,push]`, with optional Basic credentials,
 * answers `{ token, access_token, expires_in, issued_at }`. The token is a JWT signed (ES256) by
 * a key and self-signed certificate that `openssl` generates at start-up; the certificate goes
 * into the registry's `rootcertbundle` and rides in each token's `x5c` header, which is how
 * distribution finds the signing key. `access` holds only what the user was granted (possibly
 * nothing: the registry then answers `insufficient_scope`). Every request is recorded with the
 * headers it came with, so that tests can say who asked and what each request carried.
 */
import { createPrivateKey, randomUUID, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegistryAuth } from './registry.js';
import { run } from './tools.js';

export type Action = 'pull' | 'push';

export interface TokenGrant {
  /** A repository name, or a prefix ending in `/*` (`team/*` covers `team/a/b`). */
  repository: string;
  /** Users granted `actions`; `*` stands for every authenticated user. */
  users?: readonly string[];
  /** Anonymous clients may pull (never push) where this is true. */
  anonymous?: boolean;
  actions: readonly Action[];
}

export interface TokenServerOptions {
  /** The `service` the registry is configured with; becomes the token's `aud`. Requests for another service get 400. */
  service?: string;
  /** The token's `iss`; the registry's `issuer` must match. */
  issuer?: string;
  /** User name → password. */
  users?: Record<string, string>;
  grants?: readonly TokenGrant[];
  /** Token lifetime, seconds. */
  expiresIn?: number;
}

export interface ResourceAccess {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenRequest {
  /** Path and query as they arrived. */
  url: string;
  method: string;
  headers: IncomingHttpHeaders;
  /** The `Authorization` header, verbatim, when there was one. */
  authorization?: string;
  /** The user whose Basic credentials were valid; undefined for anonymous and for refused requests. */
  user?: string;
  /** The user name the Basic credentials named, whether or not they were valid. */
  claimed?: string;
  service: string | null;
  scopes: string[];
  status: number;
  /** What the issued token grants (empty when it grants nothing). */
  granted: ResourceAccess[];
}

export interface TokenServer {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** `http://127.0.0.1:PORT/token` */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM of the signing certificate, for the registry's `rootcertbundle`. */
  readonly certPath: string;
  /** Every request, in order. */
  readonly requests: TokenRequest[];
  /** Every token issued, in order. */
  readonly issued: string[];
  /** Requests from index `mark` on (take `requests.length` as a mark before an action). */
  since(mark: number): TokenRequest[];
  /** The registry's `auth.token` section; `realm` may name another host for the same server. */
  registryAuth(realm?: string): Extract<RegistryAuth, { token: unknown }>;
  /** A token from this server over HTTP, as any client gets one (it is recorded like any other). */
  fetchToken(scope: string, credentials?: { username: string; password: string }): Promise<string>;
  close(): Promise<void>;
}

export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const { service = 'registry.test', issuer = 'oci-mirror-test-issuer', users = {}, grants = [], expiresIn = 300 } = options;
  const dir = await mkdtemp(join(tmpdir(), 'oci-token-server-'));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  let key: KeyObject;
  let x5c: string;
  try {
    await run(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=oci-mirror test token issuer',
      ],
      { timeoutMs: 15_000 },
    );
    key = createPrivateKey(await readFile(keyPath));
    x5c = new X509Certificate(await readFile(certPath)).raw.toString('base64');
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  const requests: TokenRequest[] = [];
  const issued: string[] = [];

  function allowed(user: string | undefined, repository: string): Set<Action> {
    const actions = new Set<Action>();
    for (const g of grants) {
      const matches = g.repository.endsWith('/*') ? repository.startsWith(g.repository.slice(0, -1)) : g.repository === repository;
      if (!matches) continue;
      if (user === undefined) {
        if (g.anonymous && g.actions.includes('pull')) actions.add('pull');
      } else if (g.users?.includes(user) || g.users?.includes('*')) {
        for (const a of g.actions) actions.add(a);
      }
    }
    return actions;
  }

  function jwt(subject: string, access: ResourceAccess[], now: number): string {
    const header = { typ: 'JWT', alg: 'ES256', x5c: [x5c] };
    const claims = {
      iss: issuer,
      sub: subject,
      aud: service,
      exp: now + expiresIn,
      nbf: now - 5,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const encode = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const input = `${encode(header)}.${encode(claims)}`;
    // JOSE wants the raw r||s pair, not DER.
    const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${signature.toString('base64url')}`;
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    const authorization = req.headers.authorization;
    const record: TokenRequest = {
      url: req.url ?? '',
      method: req.method ?? '',
      headers: { ...req.headers },
      authorization,
      service: url.searchParams.get('service'),
      scopes: url.searchParams.getAll('scope').flatMap((s) => s.split(' ').filter(Boolean)),
      status: 0,
      granted: [],
    };
    requests.push(record);
    const answer = (status: number, body: object, headers: Record<string, string> = {}) => {
      record.status = status;
      send(res, status, body, headers);
    };
    req.resume();

    if (url.pathname !== '/token') return answer(404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] });
    if (req.method !== 'GET') return answer(405, { errors: [{ code: 'UNSUPPORTED', message: 'GET only' }] });
    if (record.service !== service) return answer(400, { errors: [{ code: 'INVALID_SERVICE', message: 'unknown service' }] });

    let user: string | undefined;
    if (authorization !== undefined) {
      const credentials = basicCredentials(authorization);
      record.claimed = credentials?.username;
      if (credentials === undefined || users[credentials.username] !== credentials.password) {
        return answer(401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid credentials' }] }, {
          'www-authenticate': 'Basic realm="oci-mirror test token server"',
        });
      }
      user = credentials.username;
      record.user = user;
    }

    // Only repository scopes are granted; anything else (registry:catalog:*) gets nothing.
    const access: ResourceAccess[] = [];
    for (const scope of record.scopes) {
      const parsed = parseScope(scope);
      if (parsed?.type !== 'repository') continue;
      const may = allowed(user, parsed.name);
      const actions = parsed.actions.filter((a): a is Action => (a === 'pull' || a === 'push') && may.has(a));
      if (actions.length > 0) access.push({ type: 'repository', name: parsed.name, actions: [...new Set(actions)] });
    }
    record.granted = access;
    const now = Math.floor(Date.now() / 1000);
    const token = jwt(user ?? '', access, now);
    issued.push(token);
    answer(200, { token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() });
  });
  server.keepAliveTimeout = 1_000;
  server.listen(0, '127.0.0.1');
  try {
    await once(server, 'listening');
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const realm = `${url}/token`;

  return {
    url,
    port,
    realm,
    service,
    issuer,
    certPath,
    requests,
    issued,
    since: (mark) => requests.slice(mark),
    registryAuth: (other = realm) => ({ token: { realm: other, service, issuer, rootcertbundle: certPath } }),
    async fetchToken(scope, credentials) {
      const query = new URLSearchParams({ service, scope });
      const headers: Record<string, string> = {};
      if (credentials) headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
      const res = await fetch(`${realm}?${query}`, { headers, signal: AbortSignal.timeout(5_000) });
      const body = (await res.json()) as { token?: string };
      if (res.status !== 200 || typeof body.token !== 'string') throw new Error(`token server answered ${res.status} for ${scope}`);
      return body.token;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function send(res: ServerResponse, status: number, body: object, headers: Record<string, string>): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(bytes.length), ...headers });
  res.end(bytes);
}

function basicCredentials(header: string): { username: string; password: string } | undefined {
  const m = /^Basic +(\S+)$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** `type:name:actions`; the name may itself hold colons (`repository:host:5000/app:pull`). */
function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',') };
}
