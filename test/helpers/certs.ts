/**
 * A throwaway PKI for TLS tests, made by `openssl` at test time: one CA, and certificates it
 * signs for servers (subjectAltName IP:127.0.0.1 unless told otherwise) and for clients. Keys
 * are P-256, everything is valid for two days, and every file lives in the directory given.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './tools.js';

export interface TestCa {
  /** The CA certificate (PEM file). */
  readonly cert: string;
  readonly key: string;
  readonly dir: string;
}

export interface IssuedCert {
  readonly cert: string;
  readonly key: string;
}

export interface IssueOptions {
  /** The certificate's subject CN, and the files' base name. */
  name: string;
  /** `server` (the default) or `client`: the extended key usage Go's TLS stack checks. */
  usage?: 'server' | 'client';
  /** For a server certificate; `IP:127.0.0.1` by default. */
  subjectAltName?: string;
  /** Distinguishes certificates of the same name (a rotation). */
  serial?: number;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export async function createTestCa(dir: string, name = 'oci-mirror test CA'): Promise<TestCa> {
  const cert = join(dir, 'ca.crt');
  const key = join(dir, 'ca.key');
  await openssl([
    'req', '-x509', ...KEY, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key, dir };
}

export async function issueCert(ca: TestCa, options: IssueOptions): Promise<IssuedCert> {
  const { name, usage = 'server', subjectAltName = 'IP:127.0.0.1', serial = 1 } = options;
  const base = join(ca.dir, name);
  const [cert, key, csr, ext] = ['crt', 'key', 'csr', 'ext'].map((s) => `${base}.${s}`) as [string, string, string, string];
  await openssl(['req', '-new', ...KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  const extensions = usage === 'server' ? [`subjectAltName=${subjectAltName}`, 'extendedKeyUsage=serverAuth'] : ['extendedKeyUsage=clientAuth'];
  await writeFile(ext, `${extensions.join('\n')}\nbasicConstraints=CA:FALSE\n`);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(serial), '-days', '2', '-out', cert, '-extfile', ext]);
  return { cert, key };
}

function openssl(args: string[]): Promise<unknown> {
  return run('openssl', args, { timeoutMs: 15_000 });
}
