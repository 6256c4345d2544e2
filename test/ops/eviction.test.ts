import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import type { ServedEvent } from '../../src/events/index.js';
import { ACCESS_PREFIX } from '../../src/eviction/index.js';
import type { Storage } from '../../src/storage.js';
import { raw, waitFor } from '../helpers/http.js';
import type { TestMirror } from '../helpers/mirror.js';
import { opsFixture } from './fixture.js';

const ops = opsFixture();
const KB = 1000;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Passes run when a test asks (and on size pressure); never on the clock during a test.
const EVICTION = { evictionInterval: '1h' };

/** An image on the fake upstream: a config and layers of the given sizes (or existing blobs). */
function image(repo: string, tag: string, config: number, layers: Array<number | string>) {
  const blob = (x: number | string) => (typeof x === 'string' ? x : ops.upstream.addBlob(randomBytes(x)));
  const c = blob(config);
  const ls = layers.map(blob);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: c },
    layers: ls.map((digest) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest })),
  };
  const digest = ops.upstream.addManifest(repo, tag, manifest);
  return { repo, tag, digest, config: c, layers: ls, blobs: [c, ...ls] };
}

type Image = ReturnType<typeof image>;

async function pull(m: TestMirror, img: Image, ref = img.tag): Promise<string[]> {
  const results = [(await raw(`${m.url}/v2/${img.repo}/manifests/${ref}`)).headers['x-mirror-cache'] as string];
  for (const b of img.blobs) {
    const res = await raw(`${m.url}/v2/${img.repo}/blobs/${b}`);
    expect(res.status).toBe(200);
    results.push(res.headers['x-mirror-cache'] as string);
  }
  await waitFor(() => m.mirror.fills.size === 0);
  return results;
}

async function stored(m: TestMirror, digest: string): Promise<boolean> {
  return (await m.mirror.storage.blobs.stat(digest)) !== undefined;
}

async function scrape(m: TestMirror): Promise<string> {
  return (await raw(`${m.url}/metrics`)).body.toString();
}

describe('eviction', () => {
  it('under size pressure removes the oldest image but not a layer another image shares, nor a pull in flight', async () => {
    const A = image('team/a', '1', 30 * KB, [100 * KB, 100 * KB]);
    const shared = A.layers[0]!;
    const B = image('team/b', '1', 30 * KB, [shared, 100 * KB]);
    const X = ops.upstream.addBlob(randomBytes(100 * KB));
    const C = image('team/c', '1', 1, [X]);
    // A and B: 360 KB of blobs plus two small manifests. The limit leaves room for B and A's
    // exclusive layer, but not for A's config and manifest as well.
    const m = await ops.mirror({ cache: { maxBytes: 340 * KB, ...EVICTION } });
    await m.mirror.eviction!.ready;

    await pull(m, A);
    await sleep(10);
    await pull(m, B);
    await sleep(10);

    // C's layer is in flight: the upstream holds it after the first 10 KB.
    let release!: () => void;
    ops.upstream.faults.set(X, { holdAt: 10 * KB, chunkSize: 10 * KB, hold: new Promise<void>((r) => (release = r)) });
    expect((await raw(`${m.url}/v2/${C.repo}/manifests/1`)).status).toBe(200);
    await raw(`${m.url}/v2/${C.repo}/blobs/${C.config}`);
    const inFlight = raw(`${m.url}/v2/${C.repo}/blobs/${X}`);
    await waitFor(() => m.mirror.fills.get(X) !== undefined);

    await m.mirror.eviction!.run();
    // A's manifest and config are gone; its exclusive layer fits the budget again and stays.
    expect(await stored(m, A.digest)).toBe(false);
    expect(await stored(m, A.config)).toBe(false);
    expect(await stored(m, A.layers[1]!)).toBe(true);
    for (const d of [B.digest, ...B.blobs, C.digest]) expect(await stored(m, d)).toBe(true);
    expect(m.mirror.fills.get(X)).toBeDefined();

    release();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(100 * KB);
    await waitFor(() => m.mirror.fills.size === 0);
    expect(await stored(m, X)).toBe(true);

    // X's commit put the store over the limit again: the unreferenced layer of A is next.
    await m.mirror.eviction!.run();
    expect(await stored(m, A.layers[1]!)).toBe(false);
    for (const d of [B.digest, ...B.blobs, C.digest, ...C.blobs]) expect(await stored(m, d)).toBe(true);
    expect(m.mirror.eviction!.stats().bytes).toBeLessThanOrEqual(340 * KB);

    // B still pulls in full with the upstream down; A does not.
    ops.upstream.failWith = 503;
    expect(await pull(m, B, B.digest)).toEqual(['HIT', 'HIT', 'HIT', 'HIT']);
    expect((await raw(`${m.url}/v2/${A.repo}/manifests/${A.digest}`)).status).toBe(503);
    // A's tag went with its manifest.
    const tags = [];
    for await (const [key] of m.mirror.storage.meta.list('tag/')) tags.push(key);
    expect(tags.some((t) => t.includes('team/a'))).toBe(false);
    expect(tags.some((t) => t.includes('team/b'))).toBe(true);

    const text = await scrape(m);
    expect(text).toMatch(/oci_mirror_evictions_total\{kind="manifest",reason="size"\} 1\n/);
    expect(text).toMatch(/oci_mirror_evictions_total\{kind="blob",reason="size"\} 2\n/);
    expect(text).toContain(`oci_mirror_storage_bytes ${m.mirror.eviction!.stats().bytes}\n`);
  });

  it('never removes a blob while it is being served, however long ago it was accessed', async () => {
    const big = ops.upstream.addBlob(randomBytes(16 * 1024 * 1024));
    const m = await ops.mirror({ cache: { ttl: '300ms', ...EVICTION } });
    await raw(`${m.url}/v2/team/app/blobs/${big}`);
    await waitFor(() => m.mirror.fills.size === 0);

    let resume!: () => void;
    const slow = raw(`${m.url}/v2/team/app/blobs/${big}`, { pauseAfter: 64 * 1024, resume: new Promise<void>((r) => (resume = r)) });
    await sleep(500); // the serve began 500 ms ago: expired by access time, but still in progress
    expect(await m.mirror.eviction!.run()).toMatchObject({ evicted: 0 });
    expect(await stored(m, big)).toBe(true);

    resume();
    const res = await slow;
    expect(res.complete).toBe(true);
    expect(res.body.length).toBe(16 * 1024 * 1024);
    await sleep(400);
    expect(await m.mirror.eviction!.run()).toMatchObject({ evicted: 1 });
    expect(await stored(m, big)).toBe(false);
  });

  it.each(['GET', 'HEAD'])('releases the pin of a pipelined %s whose connection went away before its turn', async (method) => {
    // A request queued behind another on one connection is served (and pinned) before it has a
    // socket; should the connection go away first, only its request's close tells. Access times
    // on a clock of the test's own, as above: what is unpinned expires the moment the test says.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const big = ops.upstream.addBlob(randomBytes(16 * 1024 * 1024));
      const queued = ops.upstream.addBlob(randomBytes(100 * KB));
      const m = await ops.mirror({ cache: { ttl: '1h', ...EVICTION } });
      for (const d of [big, queued]) expect((await raw(`${m.url}/v2/team/app/blobs/${d}`)).status).toBe(200);
      await waitFor(() => m.mirror.fills.size === 0);
      const cached = new Set<string>();
      const served: ServedEvent[] = [];
      m.mirror.events.on('cache', (e) => cached.add(e.digest));
      m.mirror.events.on('served', (e) => served.push(e));

      const { hostname, port } = new URL(m.url);
      const socket = connect(Number(port), hostname);
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write(`GET /v2/team/app/blobs/${big} HTTP/1.1\r\nHost: x\r\n\r\n${method} /v2/team/app/blobs/${queued} HTTP/1.1\r\nHost: x\r\n\r\n`);
      // The first is being answered (16 MiB: more than the socket takes while nobody reads), and
      // the second has been looked up, and pinned, behind it.
      await once(socket, 'data');
      await waitFor(() => cached.has(queued), 10_000, 'the queued request to be answered from the cache');
      socket.destroy();
      // Its end, reported: a wait with a bound, whose failure the eviction below tells better.
      await waitFor(() => served.some((e) => e.digest === queued), 10_000).catch(() => undefined);

      vi.advanceTimersByTime(2 * 3_600_000);
      // Both expired and neither is being served: both go.
      await m.mirror.eviction!.run();
      expect(await stored(m, queued), 'the queued blob kept: its pin was not released').toBe(false);
      expect(await stored(m, big)).toBe(false);
      expect(served.find((e) => e.digest === queued)).toMatchObject({ method, status: 200, complete: false, bytes: 0 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('measures the ttl from the last access: a hit refreshes it', async () => {
    // Access times on a clock of the test's own (only Date is faked, before the mirror takes
    // its clock; I/O keeps real timers): with sleeps, a loaded machine stretched "0.9 s after
    // the hit" past the 1.5 s ttl.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const blob = ops.upstream.addBlob(randomBytes(1000));
      const m = await ops.mirror({ cache: { ttl: '1500ms', ...EVICTION } });
      const url = `${m.url}/v2/team/app/blobs/${blob}`;
      await raw(url);
      await waitFor(() => m.mirror.fills.size === 0);
      vi.advanceTimersByTime(900);
      expect((await raw(url)).headers['x-mirror-cache']).toBe('HIT');
      vi.advanceTimersByTime(900); // 1.8 s after the first pull, 0.9 s after the hit
      expect(await m.mirror.eviction!.run()).toMatchObject({ evicted: 0 });
      vi.advanceTimersByTime(1000); // 1.9 s after the hit
      expect(await m.mirror.eviction!.run()).toMatchObject({ evicted: 1 });
      expect(await stored(m, blob)).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes access times in batches, not one metadata write per hit', async () => {
    let accessWrites = 0;
    const count = (fs: Storage): Storage => ({
      blobs: fs.blobs,
      meta: {
        ...fs.meta,
        set: (key, value) => {
          if (key.startsWith(ACCESS_PREFIX)) accessWrites++;
          return fs.meta.set(key, value);
        },
      },
    });
    const blob = ops.upstream.addBlob(randomBytes(1000));
    const m = await ops.mirror({ cache: { ttl: '1d', ...EVICTION } }, { wrap: count });
    const url = `${m.url}/v2/team/app/blobs/${blob}`;
    await raw(url);
    // The fill commits after its response has ended (seen under load: 29 more requests in
    // between), and a time is written only once its blob is stored.
    await waitFor(() => m.mirror.fills.size === 0);
    for (let i = 1; i < 30; i++) await raw(url);
    expect(accessWrites).toBe(0);
    await m.mirror.eviction!.flush();
    expect(accessWrites).toBe(1);
    for (let i = 0; i < 10; i++) await raw(url);
    await m.mirror.eviction!.flush();
    await m.mirror.eviction!.flush();
    expect(accessWrites).toBe(2);
  });

  it('keeps access times across a restart and reconciles records whose bytes are gone', async () => {
    const blob = ops.upstream.addBlob(randomBytes(1000));
    const first = await ops.mirror({ cache: { ttl: '600ms', ...EVICTION } });
    await raw(`${first.url}/v2/team/app/blobs/${blob}`);
    await waitFor(() => first.mirror.fills.size === 0);
    // What a crash between two deletes leaves: records without their bytes.
    const gone = `sha256:${'e'.repeat(64)}`;
    await first.mirror.storage.meta.set(`manifest/${gone}`, { mediaType: OCI_MANIFEST, size: 10 });
    await first.mirror.storage.meta.set(`${ACCESS_PREFIX}${gone}`, { at: Date.now() });
    await first.close(); // flushes access times; the data directory stays

    await sleep(700);
    const second = await ops.mirror({ cache: { ttl: '600ms', ...EVICTION } }, { dataDir: first.dataDir });
    expect(await second.mirror.eviction!.ready).toMatchObject({ objects: 1, bytes: 1000, reconciled: 2 });
    expect(await second.mirror.storage.meta.get(`manifest/${gone}`)).toBeUndefined();
    // Accessed 700 ms ago by the first process: expired, although this one has only just started.
    expect(await second.mirror.eviction!.run()).toMatchObject({ evicted: 1 });
    expect(await stored(second, blob)).toBe(false);
  });

  it('is off unless maxBytes or ttl is set', async () => {
    const m = await ops.mirror();
    expect(m.mirror.eviction).toBeUndefined();
    expect(await scrape(m)).not.toContain('oci_mirror_storage_bytes');
  });
});
