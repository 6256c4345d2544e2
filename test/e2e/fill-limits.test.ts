/**
 * `fill.maxBlobBytes` against a real docker-registry, behind a counting front: a HEAD of a blob
 * the mirror will not fetch says so as its GET does (403, DENIED), with nothing fetched, while a
 * blob stored before the limit was lowered is still served, to HEAD (200, its length) and GET.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCountingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { raw, waitFor } from '../helpers/http.js';
import { pushMultiLayerImage, type Descriptor, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools } from '../helpers/tools.js';

const LIMIT = 8 * 1024;

describe.skipIf(!requireTools(['docker-registry']))('a blob over fill.maxBlobBytes', () => {
  let registry: RunningRegistry | undefined;
  let front: CountingProxy | undefined;
  let image: Fixture;
  /** Two layers over the limit: one the mirror stored before the limit was lowered, one it never had. */
  let cached: Descriptor;
  let uncached: Descriptor;
  let small: Descriptor;
  let dataDir: string;
  let mirror: TestMirror | undefined;

  const blobUrl = (m: TestMirror, d: Descriptor) => `${m.url}/v2/${image.name}/blobs/${d.digest}`;

  beforeAll(async () => {
    registry = await startRegistry();
    front = await startCountingProxy(registry.url);
    image = await pushMultiLayerImage(registry, { name: 'team/limits' });
    const layers = image.images[0]!.layers;
    const over = layers.filter((l) => l.size > LIMIT);
    expect(over.length).toBeGreaterThanOrEqual(2);
    [cached, uncached] = [over[0]!, over[1]!];
    small = layers.find((l) => l.size <= LIMIT)!;
    expect(small).toBeDefined();

    // Stored under the default limit, then the mirror restarts over the same data with a low one.
    const before = await startTestMirror(front.url);
    dataDir = before.dataDir;
    const res = await raw(blobUrl(before, cached));
    expect(res.status).toBe(200);
    await waitFor(async () => (await before.mirror.storage.blobs.stat(cached.digest)) !== undefined, 10_000, 'the layer stored');
    await before.close(1000);
    mirror = await startTestMirror(front.url, { fill: { maxBlobBytes: LIMIT } }, { dataDir });
  });

  afterAll(async () => {
    await Promise.allSettled([mirror?.dispose(), front?.close()]);
    await registry?.destroy();
    await terminateAll();
  });

  it('answers HEAD of an uncached one as its GET: 403, no body, and nothing fetched', async () => {
    front!.reset();
    const head = await raw(blobUrl(mirror!, uncached), { method: 'HEAD' });
    // The same through the upstream named by ?ns= (a second route to the same bytes).
    const ns = await raw(`${blobUrl(mirror!, uncached)}?ns=registry.test`, { method: 'HEAD' });
    expect([ns.status, ns.headers['x-mirror-cache']]).toEqual([403, 'MISS']);
    const get = await raw(blobUrl(mirror!, uncached));
    expect(get.status).toBe(403);
    expect(JSON.parse(get.body.toString()).errors[0]).toMatchObject({ code: 'DENIED', message: expect.stringMatching(/larger than this mirror fetches/) });

    // As the mirror answers every HEAD error (an unknown blob's 404 below): the GET's status and headers, no body.
    expect(head.status).toBe(get.status);
    expect(head.body.length).toBe(0);
    for (const name of ['content-type', 'content-length', 'docker-content-digest', 'x-mirror-cache']) {
      expect(head.headers[name], name).toBe(get.headers[name]);
    }
    const unknown = await raw(`${mirror!.url}/v2/${image.name}/blobs/sha256:${'0'.repeat(64)}`, { method: 'HEAD' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers['content-type']).toBe(head.headers['content-type']);

    // The HEAD asked the upstream a HEAD; only the GET asked for the body, and it was refused on its headers.
    expect(front!.count('HEAD', uncached.digest)).toBe(2);
    expect(front!.count('GET', uncached.digest)).toBe(1);
    expect(await mirror!.mirror.storage.blobs.stat(uncached.digest)).toBeUndefined();
  });

  it('answers HEAD and GET of one stored before the limit was lowered from storage: 200', async () => {
    front!.reset();
    const head = await raw(blobUrl(mirror!, cached), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(cached.size));
    expect(head.headers['x-mirror-cache']).toBe('HIT');
    const get = await raw(blobUrl(mirror!, cached));
    expect(get.status).toBe(200);
    expect(get.body.length).toBe(cached.size);
    expect(get.headers['docker-content-digest']).toBe(cached.digest);
    expect(front!.count('GET', '/blobs/')).toBe(0);
  });

  it('answers HEAD of an uncached one under the limit 200 with its length', async () => {
    const head = await raw(blobUrl(mirror!, small), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(small.size));
  });
});
