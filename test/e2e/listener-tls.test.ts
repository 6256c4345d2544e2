/**
 * The mirror serving HTTPS itself (`tls: { certFile, keyFile }`): skopeo pulls through it
 * trusting only a CA made for this run (`--src-cert-dir`, verification on), and the pair is
 * rotated in place in the middle of a run, as cert-manager and certbot do: a TLS connection
 * opened afterwards gets the new certificate, one opened before keeps working on the old.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { Agent, get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCa, issueCert, type IssuedCert, type TestCa } from '../helpers/certs.js';
import { waitFor } from '../helpers/http.js';
import { pushTinyImage, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

describe.skipIf(!requireTools(['docker-registry', 'skopeo', 'openssl'], 'apt-get install docker-registry skopeo openssl'))(
  'the mirror serving HTTPS, its certificate rotated in place',
  () => {
    let registry: RunningRegistry | undefined;
    let mirror: TestMirror | undefined;
    let ca: TestCa;
    let first: IssuedCert;
    let second: IssuedCert;
    let image: Fixture;
    let work: string;
    let certDir: string;
    let live: { cert: string; key: string };
    let pulls = 0;

    const pull = async () => {
      const dir = join(work, `pull-${++pulls}`);
      await skopeoCopy(`${mirror!.host}/${image.ref}`, dir, { certDir, timeoutMs: 20_000 });
      await verifyDirPull(dir, image);
    };
    /** The serial of the certificate a new TLS connection to the mirror gets. */
    const servedSerial = () =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port: mirror!.port, ca: readFileSync(ca.cert) }, () => {
          resolve(socket.getPeerCertificate().serialNumber);
          socket.destroy();
        }).on('error', reject);
      });
    /** One GET over `agent`: its status, and the socket that carried it. */
    const getOver = (agent: Agent) =>
      new Promise<{ status: number; socket: TLSSocket }>((resolve, reject) => {
        get(`${mirror!.url}/healthz`, { agent }, (res) => {
          // Taken now: a kept-alive socket is detached from the response once it has ended.
          const socket = res.socket as TLSSocket;
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, socket }));
        }).on('error', reject);
      });

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'oci-e2e-listener-tls-'));
      ca = await createTestCa(work);
      first = await issueCert(ca, { name: 'mirror-1', serial: 1 });
      second = await issueCert(ca, { name: 'mirror-2', serial: 2 });
      certDir = join(work, 'skopeo-certs');
      await mkdir(certDir);
      await copyFile(ca.cert, join(certDir, 'ca.crt'));
      const liveDir = join(work, 'live');
      await mkdir(liveDir);
      live = { cert: join(liveDir, 'tls.crt'), key: join(liveDir, 'tls.key') };
      await Promise.all([copyFile(first.cert, live.cert), copyFile(first.key, live.key)]);
      registry = await startRegistry();
      image = await pushTinyImage(registry, { name: 'team/app', tag: 'v1' });
      mirror = await startTestMirror(registry.url, { tls: { certFile: live.cert, keyFile: live.key } });
    });

    afterAll(async () => {
      await Promise.allSettled([mirror?.dispose(), registry?.destroy()]);
      await terminateAll();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('serves HTTPS that skopeo verifies against the test CA', async () => {
      expect(mirror!.url).toBe(`https://${mirror!.host}`);
      await pull();
      expect(await servedSerial()).toBe('01');
    });

    it('reloads a pair rotated in place mid-run: new connections get it, open ones keep working', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(ca.cert) });
      try {
        const before = await getOver(agent);
        expect(before.socket.getPeerCertificate().serialNumber).toBe('01');
        // Overwritten in place while a pull runs, key first, as a renewal script might.
        const running = pull();
        await copyFile(second.key, live.key);
        await copyFile(second.cert, live.cert);
        await running;
        await waitFor(async () => (await servedSerial()) === '02', 5_000, 'a new connection to get the certificate with serial 02');
        const after = await getOver(agent);
        expect(after.status).toBe(200);
        expect(after.socket).toBe(before.socket);
        expect(after.socket.getPeerCertificate().serialNumber).toBe('01');
        await pull();
      } finally {
        agent.destroy();
      }
    });
  },
);
