/**
 * An upstream over HTTPS that trusts only its own CA and wants a client certificate: Debian's
 * docker-registry with `http.tls` (certificate, key, clientcas), the certificates made by
 * openssl for this run, so nothing else (NODE_EXTRA_CA_CERTS, the system store) can vouch for
 * them. The mirror reaches it with the upstream's `tls` settings, and says clearly why when it
 * cannot: an untrusted certificate, a missing client certificate, a name that does not match.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorConfigInput } from '../../src/config.js';
import { createTestCa, issueCert, type IssuedCert, type TestCa } from '../helpers/certs.js';
import { raw } from '../helpers/http.js';
import { pushTinyImage, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror, type TestMirrorOptions } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

type TlsInput = NonNullable<NonNullable<MirrorConfigInput['upstreams']>[number]['tls']>;

describe.skipIf(!requireTools(['docker-registry', 'skopeo', 'openssl'], 'apt-get install docker-registry skopeo openssl'))(
  'an upstream with its own CA and client certificates',
  () => {
    let plain: RunningRegistry | undefined;
    let secure: RunningRegistry | undefined;
    const mirrors: TestMirror[] = [];
    let ca: TestCa;
    let client: IssuedCert;
    let image: Fixture;
    let work: string;

    const mirrorWith = async (tls: TlsInput | undefined, options: TestMirrorOptions = {}) => {
      const mirror = await startTestMirror(secure!.url, { upstreams: [{ name: 'tls.test', url: secure!.url, tls, timeouts: { connect: '2s', headers: '5s', body: '5s' } }] }, options);
      mirrors.push(mirror);
      return mirror;
    };
    /** The mirror's answer to a manifest GET: its status and OCI error, if any. */
    const manifestError = async (mirror: TestMirror) => {
      const res = await raw(`${mirror.url}/v2/${image.ref.replace(':', '/manifests/')}`);
      const body = JSON.parse(res.body.toString('utf8') || '{}') as { errors?: Array<{ code: string; message: string }> };
      return { status: res.status, error: body.errors?.[0] };
    };

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'oci-e2e-upstream-tls-'));
      ca = await createTestCa(work);
      const server = await issueCert(ca, { name: 'registry', subjectAltName: 'IP:127.0.0.1' });
      client = await issueCert(ca, { name: 'mirror', usage: 'client' });
      // Pushed over plain HTTP, then served over HTTPS from the same storage.
      plain = await startRegistry();
      image = await pushTinyImage(plain, { name: 'team/app', tag: 'v1' });
      await plain.stop();
      secure = await startRegistry({
        tls: { certificate: server.cert, key: server.key, clientcas: [ca.cert] },
        config: { storage: { filesystem: { rootdirectory: join(plain.dir, 'data') } } },
      });
    });

    afterAll(async () => {
      await Promise.allSettled([...mirrors.map((m) => m.dispose()), secure?.destroy(), plain?.destroy()]);
      await terminateAll();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('pulls with the CA and the client certificate', async () => {
      const mirror = await mirrorWith({ caFile: ca.cert, certFile: client.cert, keyFile: client.key });
      const dir = join(work, 'pull-trusted');
      await skopeoCopy(`${mirror.host}/${image.ref}`, dir, { timeoutMs: 20_000 });
      await verifyDirPull(dir, image);
    });

    it('without the CA: an OCI error naming the upstream and the failed certificate verification', async () => {
      const mirror = await mirrorWith({ certFile: client.cert, keyFile: client.key });
      const { status, error } = await manifestError(mirror);
      expect(status).toBe(503);
      expect(error?.code).toBe('UNAVAILABLE');
      expect(error?.message).toMatch(/^upstream tls\.test unreachable: TLS certificate verification failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\)$/);
    });

    it('without the client certificate: an OCI error saying the upstream refused it', async () => {
      const mirror = await mirrorWith({ caFile: ca.cert });
      const { status, error } = await manifestError(mirror);
      expect(status).toBe(503);
      expect(error?.message).toMatch(/^upstream tls\.test unreachable: TLS client certificate refused or missing \(ERR_SSL_\w+\)$/);
    });

    it('checks the certificate against servername when one is set', async () => {
      const mirror = await mirrorWith({ caFile: ca.cert, certFile: client.cert, keyFile: client.key, servername: 'registry.other.test' });
      const { error } = await manifestError(mirror);
      expect(error?.message).toContain('TLS certificate verification failed (ERR_TLS_CERT_ALTNAME_INVALID)');
    });

    it('insecureSkipVerify pulls without the CA, and says so at start', async () => {
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      const mirror = await mirrorWith({ insecureSkipVerify: true, certFile: client.cert, keyFile: client.key }, { logger });
      expect(lines.map((l) => JSON.parse(l) as { level: number; upstream?: string; msg: string })).toContainEqual(
        expect.objectContaining({ level: 40, upstream: 'tls.test', msg: expect.stringContaining('tls.insecureSkipVerify') }),
      );
      const dir = join(work, 'pull-unverified');
      await skopeoCopy(`${mirror.host}/${image.ref}`, dir, { timeoutMs: 20_000 });
      await verifyDirPull(dir, image);
    });
  },
);
