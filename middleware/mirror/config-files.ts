/**
 * Every file (and environment variable) a config makes start-up read, each with the one
 * function start-up reads it with, so that `oci-mirror check` reports exactly what start-up
 * would, without opening storage or contacting an upstream or Redis (like `nginx -t`).
 *
 * A new key that names a file (a certificate, a key, …) adds its reader to CONFIG_FILES, and
 * start-up calls the same reader.
 */
import { loadHtpasswd, type Htpasswd } from '../mirror-auth/index.js';
import { ConfigError, type MirrorConfig, type UpstreamConfig } from '../../src/config.js';
import { replicationSecret } from '../../src/replication/index.js';
import { readListenerTls } from '../../src/listener/index.js';
import type { SecretReload } from '../../src/secret-file.js';
import { rotatingSecret, type Secret } from '../../src/secrets.js';
import { readUpstreamTls } from '../../src/upstream/trust.js';
import type { UpstreamCredentials } from '../../src/upstream/types.js';

/** Told when a secret file changed: whether its new content was taken. */
export type OnSecretReload = (reload: SecretReload) => void;

// Secrets in files are read again when the files change (rotatingSecret): a rotation needs no restart.

export function upstreamToken(u: UpstreamConfig, onReload?: OnSecretReload): Secret | undefined {
  return rotatingSecret({ value: u.token, file: u.tokenFile, env: u.tokenEnv }, `upstreams[${u.name}].token`, onReload);
}

export function upstreamCredentials(u: UpstreamConfig, onReload?: OnSecretReload): Secret<UpstreamCredentials> | undefined {
  const { username } = u;
  if (username === undefined) return undefined;
  const password = rotatingSecret({ value: u.password, file: u.passwordFile, env: u.passwordEnv }, `upstreams[${u.name}].password`, onReload);
  if (password === undefined) return undefined;
  if (typeof password === 'string') return { username, password };
  let credentials = { username, password: password() };
  return () => {
    const now = password();
    if (now !== credentials.password) credentials = { username, password: now };
    return credentials;
  };
}

export function htpasswdFrom(auth: MirrorConfig['auth'], onReload?: OnSecretReload): Htpasswd | undefined {
  if (auth.htpasswd === undefined) return undefined;
  try {
    return loadHtpasswd(auth.htpasswd, onReload);
  } catch (err) {
    throw new ConfigError(`auth.htpasswd: ${(err as Error).message}`);
  }
}

export function clientToken(auth: MirrorConfig['auth'], i: number, onReload?: OnSecretReload): Secret {
  const t = auth.tokens[i]!;
  return rotatingSecret({ value: t.token, file: t.tokenFile, env: t.tokenEnv }, `auth.tokens[${i}].token`, onReload)!;
}

/** The admin API's token; undefined while the API is off, which then needs none. */
export function adminToken({ enabled, token, tokenFile, tokenEnv }: MirrorConfig['admin'], onReload?: OnSecretReload): Secret | undefined {
  return enabled ? rotatingSecret({ value: token, file: tokenFile, env: tokenEnv }, 'admin.token', onReload) : undefined;
}

/** One read each, so that one missing file does not hide the next. */
const CONFIG_FILES: Array<(config: MirrorConfig) => Array<() => unknown>> = [
  (c) => c.upstreams.flatMap((u) => [() => upstreamToken(u), () => upstreamCredentials(u), () => readUpstreamTls(u.tls, `upstreams[${u.name}].tls`)]),
  (c) => [() => htpasswdFrom(c.auth), ...c.auth.tokens.map((_, i) => () => clientToken(c.auth, i))],
  (c) => [() => adminToken(c.admin), ...(c.tls ? [() => readListenerTls(c.tls!)] : [])],
  (c) => (c.replication ? [() => replicationSecret(c.replication!)] : []),
];

/** Reads everything the config names; returns start-up's message for each thing it could not read. */
export function checkConfigFiles(config: MirrorConfig): string[] {
  const problems: string[] = [];
  for (const read of CONFIG_FILES.flatMap((files) => files(config))) {
    try {
      read();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err.message);
    }
  }
  return problems;
}
