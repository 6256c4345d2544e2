/**
 * Proves the end-to-end harness against real software only: fixtures pushed into a real
 * docker-registry pull back intact with skopeo, straight and through distribution's own
 * pull-through cache. When a mirror test fails, this says whether the harness is at fault.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE_KEYS, pushAllFixtures, type Fixtures } from '../helpers/images.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull, verifyOciPull } from '../helpers/tools.js';

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('harness: docker-registry and skopeo', () => {
  let registry: RunningRegistry | undefined;
  let fixtures: Fixtures;
  let work: string;
  let pulls = 0;
  const dest = (): string => join(work, `pull-${++pulls}`);

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-harness-'));
    registry = await startRegistry();
    fixtures = await pushAllFixtures(registry);
  });

  afterAll(async () => {
    await registry?.destroy();
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(FIXTURE_KEYS)('pulls %s straight from the registry', async (key) => {
    const fixture = fixtures[key];
    const dir = dest();
    await skopeoCopy(`${registry!.host}/${fixture.ref}`, dir, { all: true });
    await verifyDirPull(dir, fixture);
  });

  it('pulls one platform of an index without --all', async () => {
    const dir = dest();
    await skopeoCopy(`${registry!.host}/${fixtures.ociIndex.ref}`, dir);
    await verifyDirPull(dir, fixtures.ociIndex, { all: false });
  });

  it('pulls into an oci: layout', async () => {
    const dir = dest();
    await skopeoCopy(`${registry!.host}/${fixtures.ociIndex.ref}`, dir, { all: true, transport: 'oci' });
    await verifyOciPull(dir, fixtures.ociIndex);
  });

  it('notices a corrupted blob', async () => {
    const dir = dest();
    const fixture = fixtures.multiLayer;
    await skopeoCopy(`${registry!.host}/${fixture.ref}`, dir);
    const layer = fixture.images[0]!.layers[1]!;
    await writeFile(join(dir, layer.digest.slice('sha256:'.length)), Buffer.alloc(layer.size));
    await expect(verifyDirPull(dir, fixture)).rejects.toThrow(/has digest/);
  });

  it('keeps its storage across restart() and really stops on stop()', async () => {
    await registry!.restart();
    const dir = dest();
    await skopeoCopy(`${registry!.host}/${fixtures.nested.ref}`, dir);
    await verifyDirPull(dir, fixtures.nested);
    await registry!.stop();
    await expect(fetch(`${registry!.url}/v2/`, { signal: AbortSignal.timeout(2_000) })).rejects.toThrow();
    await expect(skopeoCopy(`${registry!.host}/${fixtures.nested.ref}`, dest(), { timeoutMs: 30_000 })).rejects.toThrow(/skopeo/);
    await registry!.restart();
  });

  it('runs as distribution pull-through cache in proxy mode', async () => {
    const proxy = await startRegistry({ proxy: { remoteurl: registry!.url } });
    try {
      for (const fixture of [fixtures.multiLayer, fixtures.dockerManifestList]) {
        const dir = dest();
        await skopeoCopy(`${proxy.host}/${fixture.ref}`, dir, { all: true });
        await verifyDirPull(dir, fixture);
      }
    } finally {
      await proxy.destroy();
    }
  });
});
