/**
 * An upstream's `tls` config made into what its connections use: the files read once at
 * start-up, and checked there (a CA that is no certificate, a key that does not match its
 * certificate), so that a mistake is a config error naming the key, not a failed pull later.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '../config.js';
import type { UpstreamTls } from './types.js';

export interface UpstreamTlsConfig {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  servername?: string;
  insecureSkipVerify: boolean;
}

/** `key` names the config section in messages, e.g. `upstreams[registry.internal].tls`. */
export function readUpstreamTls(config: UpstreamTlsConfig | undefined, key: string): UpstreamTls | undefined {
  if (config === undefined) return undefined;
  const read = (file: string | undefined, name: string): string | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${key}.${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const tls: UpstreamTls = {
    ca: read(config.caFile, 'caFile'),
    cert: read(config.certFile, 'certFile'),
    key: read(config.keyFile, 'keyFile'),
    servername: config.servername,
    insecureSkipVerify: config.insecureSkipVerify,
  };
  check(() => pemCertificates(tls.ca!), `${key}.caFile: ${config.caFile} holds no usable PEM certificate`, tls.ca);
  check(() => createSecureContext({ cert: tls.cert, key: tls.key }), `${key}.keyFile: ${config.keyFile} is not the key of ${config.certFile}, or either is no PEM`, tls.cert);
  return tls;
}

/** Node takes a CA file without a single certificate in it silently, and then trusts nothing. */
function pemCertificates(pem: string): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('no certificate');
  for (const block of blocks) new X509Certificate(block);
}

function check(build: () => unknown, message: string, given: string | undefined): void {
  if (given === undefined) return;
  try {
    build();
  } catch {
    throw new ConfigError(message);
  }
}
