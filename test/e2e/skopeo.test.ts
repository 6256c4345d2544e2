/**
 * skopeo pulls every fixture through the mirror from a real docker-registry, then pulls
 * them all again with that registry stopped: tags are past their TTL, revalidation fails,
 * and the mirror must serve what it has.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { FIXTURE_KEYS, pushAllFixtures, pushBigImage, type Fixture, type Fixtures } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const TAG_TTL_MS = 1_000;

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('skopeo pulls through the mirror', () => {
  let registry: RunningRegistry | undefined;
  let mirror: TestMirror | undefined;
  let fixtures: Fixtures;
  let concurrent: Fixture;
  let work: string;
  let pulls = 0;

  /**
   * Pulls `fixture` (every platform) through the mirror into a fresh dir and checks every byte.
   * The time allowed grows with the bytes (10 s + 1 s per 20 MB) so that a hung mirror fails
   * a small pull in seconds rather than minutes.
   */
  const pullAndVerify = async (fixture: Fixture): Promise<void> => {
    const dir = join(work, `pull-${++pulls}`);
    const bytes = fixture.blobs.reduce((n, b) => n + b.size, 0);
    const timeoutMs = 10_000 + Math.ceil(bytes / 20e6) * 1_000;
    await skopeoCopy(`${mirror!.host}/${fixture.ref}`, dir, { all: true, timeoutMs });
    await verifyDirPull(dir, fixture);
    await rm(dir, { recursive: true, force: true });
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-skopeo-'));
    registry = await startRegistry();
    fixtures = await pushAllFixtures(registry);
    concurrent = await pushBigImage(registry, { name: 'e2e/concurrent', size: 64 * 1024 * 1024, seed: 'concurrent' });
    // startTestMirror is startServer on 127.0.0.1:0 over a fresh data dir, with the
    // upstream named 'registry.test'.
    mirror = await startTestMirror(registry.url, { cache: { tagTtl: `${TAG_TTL_MS}ms` } });
  });

  afterAll(async () => {
    // Each is cleaned up even if another's cleanup fails.
    await Promise.allSettled([mirror?.dispose(), registry?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('serves two skopeo processes pulling the same cold image at once', async () => {
    await Promise.all([pullAndVerify(concurrent), pullAndVerify(concurrent)]);
  });

  it.each(FIXTURE_KEYS)('pulls %s through the mirror', async (key) => {
    await pullAndVerify(fixtures[key]);
  });

  describe('with the upstream registry stopped and the mirror restarted', () => {
    beforeAll(async () => {
      await registry!.stop();
      // A new mirror over the same storage: what was cached must survive a restart.
      const dataDir = mirror!.dataDir;
      await mirror!.close();
      mirror = await startTestMirror(registry!.url, { cache: { tagTtl: `${TAG_TTL_MS}ms` } }, { dataDir });
      await sleep(TAG_TTL_MS + 200);
    });

    it.each(FIXTURE_KEYS)('pulls %s from the cache', async (key) => {
      await pullAndVerify(fixtures[key]);
    });

    it('pulls the concurrently pulled image from the cache', async () => {
      await pullAndVerify(concurrent);
    });
  });
});
