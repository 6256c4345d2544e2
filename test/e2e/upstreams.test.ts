/**
 * Two real registries with different images under the same name, one mirror in front:
 * skopeo pulls each through the default form and the registry-prefix form, containerd-style
 * `?ns=` requests reach the right one, and one registry going down breaks nothing else.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { raw } from '../helpers/http.js';
import { pushMultiLayerImage, pushTinyImage, type Fixture } from '../helpers/images.js';
import { startTestMirror, storedSoon, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('several real upstreams', () => {
  let a: RunningRegistry | undefined;
  let b: RunningRegistry | undefined;
  let mirror: TestMirror | undefined;
  let onA: Fixture;
  let onB: Fixture;
  let work: string;
  let pulls = 0;

  const pull = async (ref: string, fixture: Fixture) => {
    const dir = join(work, `pull-${++pulls}`);
    await skopeoCopy(`${mirror!.host}/${ref}`, dir, { all: true, timeoutMs: 20_000 });
    await verifyDirPull(dir, fixture);
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-upstreams-'));
    [a, b] = await Promise.all([startRegistry(), startRegistry()]);
    // Same name and tag, different images.
    onA = await pushTinyImage(a, { name: 'shared/app', tag: 'v1' });
    onB = await pushMultiLayerImage(b, { name: 'shared/app', tag: 'v1' });
    expect(onA.digest).not.toBe(onB.digest);
    mirror = await startTestMirror(a.url, {
      upstreams: [
        { name: 'registry-a.test', url: a.url, default: true },
        { name: 'registry-b.test', url: b.url, aliases: ['b'] },
      ],
      cache: { tagTtl: '1s' },
    });
  });

  afterAll(async () => {
    await Promise.allSettled([mirror?.dispose(), a?.destroy(), b?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('pulls the default registry’s image by its plain name', async () => {
    await pull('shared/app:v1', onA);
  });

  it('pulls the other registry’s image through the registry-prefix form', async () => {
    await pull('registry-b.test/shared/app:v1', onB);
    await pull('b/shared/app:v1', onB);
  });

  it('answers containerd-style ?ns= requests from the named registry', async () => {
    const res = await raw(`${mirror!.url}/v2/shared/app/manifests/v1?ns=registry-b.test`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(onB.digest);
    const blob = onB.blobs[0]!;
    const got = await raw(`${mirror!.url}/v2/shared/app/blobs/${blob.digest}?ns=registry-b.test`);
    expect(got.status).toBe(200);
    expect(got.body.length).toBe(blob.size);
    const refused = await raw(`${mirror!.url}/v2/shared/app/manifests/v1?ns=registry.example.com`);
    expect(refused.status).toBe(404);
  });

  it('keeps serving one registry while the other is down, and both from cache', async () => {
    await a!.stop();
    await new Promise((r) => setTimeout(r, 1_100));
    await pull('shared/app:v1', onA); // stale from cache
    await pull('registry-b.test/shared/app:v1', onB); // live
    await b!.stop();
    await pull('b/shared/app:v1', onB); // stale from cache
  });
});

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

// containerd needs root for its state; CI runs as root, so there it must run.
describe.skipIf(!requireTools(['docker-registry', 'containerd', 'ctr'], 'apt-get install docker-registry containerd') || !(isRoot || process.env.CI === 'true'))(
  'containerd pulls through the mirror with hosts.toml',
  () => {
    let registry: RunningRegistry | undefined;
    let mirror: TestMirror | undefined;
    let containerd: Containerd | undefined;
    let image: Fixture;
    let work: string;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'oci-e2e-containerd-'));
      registry = await startRegistry();
      image = await pushMultiLayerImage(registry, { name: 'team/app', tag: 'v1' });
      mirror = await startTestMirror(registry.url, {
        upstreams: [
          { name: 'docker.io', url: 'http://127.0.0.1:9', default: true },
          { name: 'registry-b.test', url: registry.url },
        ],
      });
      containerd = await startContainerd(join(work, 'containerd'));
    });

    afterAll(async () => {
      await Promise.allSettled([containerd?.stop(), mirror?.dispose(), registry?.destroy()]);
      await terminateAll();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('fetches every blob through the mirror, which routes by the ns containerd adds', async () => {
      // The server entry points nowhere: if containerd gets the image, the mirror served it.
      await containerd!.mirror('registry-b.test', 'http://127.0.0.1:9', mirror!.url);
      await containerd!.fetch(`registry-b.test/${image.ref}`);
      for (const blob of [image, ...image.blobs]) {
        expect(await storedSoon(mirror!.mirror.storage, blob.digest)).toMatchObject({ size: blob.size });
      }
    });
  },
);
