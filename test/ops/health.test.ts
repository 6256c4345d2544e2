import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createReadiness, type ReadinessReport } from '../../src/health/index.js';
import type { Storage } from '../../src/storage.js';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';
import type { TestMirror } from '../helpers/mirror.js';
import { opsFixture } from './fixture.js';

const ops = opsFixture();

async function readyz(url: string): Promise<{ status: number; report: ReadinessReport }> {
  const res = await raw(`${url}/readyz`);
  return { status: res.status, report: JSON.parse(res.body.toString()) as ReadinessReport };
}

/** A mirror whose storage refuses writes while `broken` is set, as a full or read-only volume would. */
async function breakableMirror(): Promise<{ server: TestMirror; setBroken(v: boolean): void }> {
  let broken = false;
  const fail = () => Object.assign(new Error("EROFS: read-only file system, open '/var/cache/oci/tmp/x'"), { code: 'EROFS' });
  const server = await ops.mirror(
    {},
    {
      wrap: (fs) => ({
        blobs: { ...fs.blobs, put: (d, s, o) => (broken ? Promise.reject(fail()) : fs.blobs.put(d, s, o)) },
        meta: { ...fs.meta, set: (k, v) => (broken ? Promise.reject(fail()) : fs.meta.set(k, v)) },
      }),
    },
  );
  return { server, setBroken: (v) => (broken = v) };
}

describe('health', () => {
  it('answers /healthz, and /readyz with storage and upstream health', async () => {
    const m = await ops.mirror();
    expect((await raw(`${m.url}/healthz`)).status).toBe(200);
    const { status, report } = await readyz(m.url);
    expect(status).toBe(200);
    expect(report).toMatchObject({
      ready: true,
      storage: { writable: true },
      upstreams: [{ name: 'registry.test', state: 'up', urls: [{ url: ops.upstream.url, state: 'up', failures: 0 }] }],
    });
    // The probe leaves nothing behind.
    const blobs = [];
    for await (const b of m.mirror.storage.blobs.list()) blobs.push(b);
    expect(blobs).toEqual([]);
    expect(await m.temporaries()).toEqual([]);
  });

  it('turns 503 when the store refuses writes, and back once it takes them again', async () => {
    const { server, setBroken } = await breakableMirror();
    expect((await readyz(server.url)).status).toBe(200);
    setBroken(true);
    let last = await readyz(server.url);
    await waitFor(async () => (last = await readyz(server.url)).status === 503, 5000, 'readyz 503');
    // Only the code goes out: no path of the data directory.
    expect(last.report.storage).toMatchObject({ writable: false, error: 'EROFS' });
    expect(last.report.ready).toBe(false);
    expect((await raw(`${server.url}/healthz`)).status).toBe(200);
    setBroken(false);
    await waitFor(async () => (await readyz(server.url)).status === 200, 5000, 'readyz 200');
  });

  it('turns 503 when the data directory cannot be written', async () => {
    const m = await ops.mirror();
    expect((await readyz(m.url)).status).toBe(200);
    // Root ignores permission bits; a file where the store wants its tmp/ directory stops anyone.
    await rm(join(m.dataDir, 'tmp'), { recursive: true, force: true });
    await writeFile(join(m.dataDir, 'tmp'), 'not a directory');
    await waitFor(async () => (await readyz(m.url)).status === 503, 5000, 'readyz 503');
    await rm(join(m.dataDir, 'tmp'));
    await waitFor(async () => (await readyz(m.url)).status === 200, 5000, 'readyz 200');
  });

  it('stays ready with a dead upstream, and says it is down', async () => {
    const dead = await startFakeUpstream();
    const deadUrl = dead.url;
    await dead.close();
    const m = await ops.mirror({}, { upstreamUrl: deadUrl });
    await raw(`${m.url}/v2/team/app/manifests/1.0`);
    const { status, report } = await readyz(m.url);
    expect(status).toBe(200);
    expect(report.upstreams).toMatchObject([{ name: 'registry.test', state: 'down', urls: [{ state: 'down', failures: 1 }] }]);
  });

  it('probes storage once for a burst of checks, and times out a store that hangs', async () => {
    let puts = 0;
    const hanging: Storage['blobs'] = {
      stat: async () => undefined,
      read: async () => undefined,
      put: () => {
        puts++;
        return new Promise(() => {});
      },
      delete: async () => false,
      list: async function* () {},
    };
    const meta: Storage['meta'] = { get: async () => undefined, set: async () => {}, delete: async () => false, list: async function* () {} };
    const readiness = createReadiness({ storage: { blobs: hanging, meta }, upstreams: [] }, { timeout: 100, cacheFor: 10_000 });
    const reports = await Promise.all([readiness.check(), readiness.check(), readiness.check()]);
    expect(puts).toBe(1);
    for (const r of reports) expect(r).toMatchObject({ ready: false, storage: { writable: false, error: 'storage probe took longer than 100 ms' } });
  });
});
