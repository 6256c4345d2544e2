import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FillEndEvent } from '../../src/events/index.js';
import type { Fill } from '../../src/fill/index.js';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { expectWhole, raw, waitFor, type RawResponse } from '../../test/helpers/http.js';
import { parseMetrics, total } from '../../test/helpers/metrics.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';

const MiB = 1024 * 1024;
let upstream: FakeUpstream;
let mirror: TestMirror;
/** Every fill the mirror started, by digest: a cut response then says how its fill ended. */
let fills: Map<string, Fill>;

// Both commit paths: the fs store adopting the verified spool file by rename, and a store
// without local files taking the bytes through put() while the fill runs (as S3 and Keyv will).
describe.each([
  ['spool adopt', false],
  ['streaming put', true],
])('blob tee-and-store (%s)', (_label, withoutSpool) => {
beforeEach(async () => {
  upstream = await startFakeUpstream();
  // Far above what any fill here needs, even on a loaded machine, where twenty clients of one
  // 8 MiB fill have taken over 5 s: a short one would cut responses that are only slow. The
  // timeout test starts a mirror with a short one of its own.
  mirror = await startTestMirror(upstream.url, { fill: { timeout: '60s' } }, { withoutSpool });
  fills = watchFills(mirror);
});
afterEach(async () => {
  await mirror.dispose();
  await upstream.close();
});

const blobUrl = (d: string, name = 'team/app') => `${mirror.url}/v2/${name}/blobs/${d}`;

async function storedDigest(d: string): Promise<string | undefined> {
  const stream = await mirror.mirror.storage.blobs.read(d);
  if (!stream) return undefined;
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function fillsSettled(): Promise<void> {
  await waitFor(() => mirror.mirror.fills.size === 0, 15_000, 'fills to settle');
}

function watchFills(m: TestMirror): Map<string, Fill> {
  const seen = new Map<string, Fill>();
  m.mirror.events.on('fill:start', ({ digest }) => {
    const fill = m.mirror.fills.get(digest);
    if (fill) seen.set(digest, fill);
  });
  return seen;
}

/** Asserts `res` is the whole blob `d`; a cut says how the blob's fill ended, if it did. */
function expectBlob(res: RawResponse, data: Buffer, d: string): void {
  expectWhole(res, data, () => {
    const fill = fills.get(d);
    return fill && `fill ${fill.state}${fill.error ? ` (${fill.error.message})` : ''} after ${fill.received} bytes`;
  });
}

  it('serves an uncached blob, caches it, and serves the second pull from storage', async () => {
    const data = randomBytes(3 * MiB);
    const d = upstream.addBlob(data);
    const first = await raw(blobUrl(d));
    expect(first.status).toBe(200);
    expect(first.headers['x-mirror-cache']).toBe('MISS');
    expectBlob(first, data, d);
    await fillsSettled();
    const second = await raw(blobUrl(d));
    expect(second.headers['x-mirror-cache']).toBe('HIT');
    expect(second.headers['docker-content-digest']).toBe(d);
    expectBlob(second, data, d);
    expect(upstream.count('GET', '/blobs/')).toBe(1);
    expect(await mirror.temporaries()).toEqual([]);
  });

  for (const [label, offset] of [
    ['before the first byte', 0],
    ['in the middle', 2 * MiB],
    ['at the last byte', 4 * MiB - 1],
  ] as const) {
    it(`keeps filling when the client hangs up ${label}`, async () => {
      const data = randomBytes(4 * MiB);
      const d = upstream.addBlob(data);
      upstream.faults.set(d, { delayMs: 5, chunkSize: 256 * 1024 });
      const res = await raw(blobUrl(d), { hangUpAfter: offset });
      expect(res.complete).toBe(false);
      await fillsSettled();
      expect(await storedDigest(d)).toBe(d);
      expect(upstream.count('GET', '/blobs/')).toBe(1);
      expect(await mirror.temporaries()).toEqual([]);
    });
  }

  for (const cutAt of [0, 1, 1 * MiB, 2 * MiB - 1]) {
    it(`caches nothing when the upstream cuts the body at ${cutAt}`, async () => {
      const data = randomBytes(2 * MiB);
      const d = upstream.addBlob(data);
      upstream.faults.set(d, { cutAt });
      // An error status before the body, a body that never completes, or the connection
      // cut before the headers went out (a fill that fails before its first byte is read).
      const res = await raw(blobUrl(d)).catch((err: Error) => err);
      if (res instanceof Error) expect(res.message).toMatch(/socket hang up|ECONNRESET/);
      else if (res.status === 200) expect(res.complete).toBe(false);
      else expect(res.status).toBeGreaterThanOrEqual(500);
      await fillsSettled();
      expect(await mirror.mirror.storage.blobs.stat(d)).toBeUndefined();
      expect(await mirror.temporaries()).toEqual([]);
    });
  }

  it('never completes a 200 for wrong bytes, and caches nothing', async () => {
    const data = randomBytes(1 * MiB);
    const d = upstream.addBlob(data);
    const wrong = Buffer.from(data);
    wrong.writeUInt8(wrong.readUInt8(wrong.length - 1) ^ 0xff, wrong.length - 1);
    upstream.faults.set(d, { replaceWith: wrong });
    const res = await raw(blobUrl(d));
    expect(res.complete).toBe(false);
    expect(res.body.length).toBeLessThan(data.length);
    await fillsSettled();
    expect(await mirror.mirror.storage.blobs.stat(d)).toBeUndefined();
    expect(await mirror.temporaries()).toEqual([]);
    // The next pull tries again and, with honest bytes, succeeds.
    upstream.faults.delete(d);
    const retry = await raw(blobUrl(d));
    expectBlob(retry, data, d);
  });

  it('never completes a 200 for wrong bytes without a Content-Length', async () => {
    const data = randomBytes(512 * 1024);
    const d = upstream.addBlob(data);
    upstream.faults.set(d, { replaceWith: randomBytes(512 * 1024), chunked: true });
    const res = await raw(blobUrl(d));
    expect(res.complete).toBe(false);
    await fillsSettled();
    expect(await mirror.mirror.storage.blobs.stat(d)).toBeUndefined();
  });

  it('serves twenty concurrent clients from one upstream GET', async () => {
    const data = randomBytes(8 * MiB);
    const d = upstream.addBlob(data);
    upstream.faults.set(d, { delayMs: 2, chunkSize: 256 * 1024 });
    const results = await Promise.all(Array.from({ length: 20 }, () => raw(blobUrl(d))));
    for (const r of results) {
      expect(r.status).toBe(200);
      expectBlob(r, data, d);
    }
    expect(upstream.count('GET', '/blobs/')).toBe(1);
    await fillsSettled();
    expect(await storedDigest(d)).toBe(d);
  });

  it('lets a late joiner stream what has arrived and follow the fill live', async () => {
    const data = randomBytes(4 * MiB);
    const d = upstream.addBlob(data);
    let release!: () => void;
    upstream.faults.set(d, { holdAt: 2 * MiB, hold: new Promise<void>((r) => (release = r)) });
    const early = raw(blobUrl(d));
    await waitFor(() => (mirror.mirror.fills.get(d)?.written ?? 0) >= 2 * MiB, 10_000, 'half the blob');
    const late = raw(blobUrl(d));
    await waitFor(async () => upstream.count('GET', '/blobs/') === 1);
    release();
    const [a, b] = await Promise.all([early, late]);
    expectBlob(a, data, d);
    expectBlob(b, data, d);
    expect(b.headers['x-mirror-cache']).toBe('JOIN');
    expect(upstream.count('GET', '/blobs/')).toBe(1);
  });

  it('does not let a stalled client slow the fill or another client', async () => {
    const data = randomBytes(16 * MiB);
    const d = upstream.addBlob(data);
    let resume!: () => void;
    const stalled = raw(blobUrl(d), { pauseAfter: 1, resume: new Promise<void>((r) => (resume = r)), timeoutMs: 60_000 });
    await waitFor(() => mirror.mirror.fills.get(d) !== undefined, 5_000, 'fill start');
    const fast = await raw(blobUrl(d));
    expectBlob(fast, data, d);
    await fillsSettled();
    expect(await storedDigest(d)).toBe(d);
    resume();
    const slow = await stalled;
    expectBlob(slow, data, d);
  });

  it('answers ranges from storage and from a fill', async () => {
    const data = randomBytes(1 * MiB);
    const d = upstream.addBlob(data);
    const partial = await raw(blobUrl(d), { headers: { Range: 'bytes=100-199' } });
    expect(partial.status).toBe(206);
    expect(partial.headers['content-range']).toBe(`bytes 100-199/${data.length}`);
    expect(partial.body.equals(data.subarray(100, 200))).toBe(true);
    await fillsSettled();
    const tail = await raw(blobUrl(d), { headers: { Range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(tail.body.equals(data.subarray(data.length - 10))).toBe(true);
    const bad = await raw(blobUrl(d), { headers: { Range: `bytes=${data.length}-` } });
    expect(bad.status).toBe(416);
    expect(bad.headers['content-range']).toBe(`bytes */${data.length}`);
    expect(JSON.parse(bad.body.toString()).errors[0].code).toBe('RANGE_INVALID');
  });

  it('answers HEAD without pulling the blob', async () => {
    const data = randomBytes(100_000);
    const d = upstream.addBlob(data);
    const head = await raw(blobUrl(d), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(data.length));
    expect(upstream.count('GET', '/blobs/')).toBe(0);
  });

  it('passes an upstream 404 through as BLOB_UNKNOWN and caches nothing', async () => {
    const d = `sha256:${'0'.repeat(64)}`;
    const res = await raw(blobUrl(d));
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('BLOB_UNKNOWN');
    expect(await mirror.temporaries()).toEqual([]);
  });

  it('gives up at the fill timeout, caches nothing, and cuts the client', async () => {
    // The fill timeout must be the first limit the held body runs into: the upstream's body
    // timeout is made far longer than it here, and the fill's own error says which one fired
    // (elapsed time alone cannot tell them apart on a loaded machine).
    const short = await startTestMirror(
      upstream.url,
      {
        fill: { timeout: '3s' },
        upstreams: [{ name: 'registry.test', url: upstream.url, timeouts: { connect: '2s', headers: '5s', body: '60s' } }],
      },
      { withoutSpool },
    );
    try {
      const started = watchFills(short);
      const data = randomBytes(1 * MiB);
      const d = upstream.addBlob(data);
      upstream.faults.set(d, { holdAt: 512 * 1024, hold: new Promise<void>(() => {}) });
      const t0 = Date.now();
      const res = await raw(`${short.url}/v2/team/app/blobs/${d}`);
      expect(res.status).toBe(200);
      expect(res.complete).toBe(false);
      expect(started.get(d)?.error?.message).toBe('blob fill timed out after 3000 ms');
      // Cut by the mirror soon after its timeout, not by the client's own 30 s one.
      expect(Date.now() - t0).toBeLessThan(20_000);
      await waitFor(() => short.mirror.fills.size === 0, 15_000, 'fills to settle');
      expect(await short.mirror.storage.blobs.stat(d)).toBeUndefined();
      expect(await short.temporaries()).toEqual([]);
    } finally {
      await short.dispose();
    }
  });

  it('answers UNAVAILABLE when the upstream cannot be reached', async () => {
    const data = randomBytes(1000);
    const d = upstream.addBlob(data);
    await upstream.close();
    const res = await raw(blobUrl(d));
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('UNAVAILABLE');
  });
});

// fill.maxBlobBytes and fill.reserveBytes over HTTP, for both commit paths: whatever the store,
// a refusal is an OCI error before any header of a 200, and a cut leaves nothing behind.
describe.each([
  ['spool adopt', false],
  ['streaming put', true],
])('blob fill limits (%s)', (_label, withoutSpool) => {
  let limited: TestMirror;
  let spoolDir: string;
  let ends: FillEndEvent[];

  beforeEach(async () => {
    upstream = await startFakeUpstream();
    spoolDir = await mkdtemp(join(tmpdir(), 'oci-mirror-spool-'));
  });
  afterEach(async () => {
    await limited?.dispose();
    await upstream.close();
    await rm(spoolDir, { recursive: true, force: true });
  });

  async function start(fill: Record<string, unknown>): Promise<TestMirror> {
    limited = await startTestMirror(upstream.url, { fill: { timeout: '5s', spoolDir, ...fill } }, { withoutSpool });
    ends = [];
    limited.mirror.events.on('fill:end', (e) => ends.push(e));
    return limited;
  }
  const blobUrl = (d: string) => `${limited.url}/v2/team/app/blobs/${d}`;
  const refusals = async (reason: string) => total(parseMetrics(await limited.metrics.text()), 'oci_mirror_fills_refused_total', { reason });

  /** Nothing of the blob anywhere: not in the store, not in the store's tmp/, not in the spool directory. */
  async function leftNothing(d: string): Promise<void> {
    await waitFor(() => limited.mirror.fills.size === 0, 15_000, 'fills to settle');
    expect(await limited.mirror.storage.blobs.stat(d)).toBeUndefined();
    expect(await limited.temporaries()).toEqual([]);
    expect(await readdir(spoolDir, { recursive: true })).toEqual([]);
  }

  it('cuts an endless body without a declared size at maxBlobBytes and keeps nothing', async () => {
    await start({ maxBlobBytes: MiB });
    const d = upstream.addBlob(randomBytes(256 * 1024));
    upstream.faults.set(d, { endless: true });
    const res = await raw(blobUrl(d));
    // No size to refuse on: the 200 went out, so the cut is all the client can be told.
    expect(res.status).toBe(200);
    expect(res.complete).toBe(false);
    expect(res.body.length).toBeLessThanOrEqual(MiB);
    await leftNothing(d);
    expect(ends).toMatchObject([{ digest: d, outcome: 'failed', refused: { reason: 'too_large' } }]);
    expect(ends[0]!.bytes).toBeLessThanOrEqual(MiB);
    await waitFor(() => upstream.bodies.get(d)?.cut === true, 10_000, 'the upstream connection to close');
    expect(await refusals('too_large')).toBe(1);
  });

  it('refuses a declared size over maxBlobBytes with DENIED before any header, and leaves the body unread', async () => {
    await start({ maxBlobBytes: MiB });
    const data = randomBytes(8 * MiB);
    const d = upstream.addBlob(data);
    // At least 640 ms to send it all: a mirror that read the body would see it end.
    upstream.faults.set(d, { delayMs: 5 });
    for (let pull = 1; pull <= 2; pull++) {
      const res = await raw(blobUrl(d));
      expect(res.status).toBe(403);
      expect(res.complete).toBe(true);
      expect(res.headers['content-type']).toBe('application/json');
      const [error] = JSON.parse(res.body.toString()).errors;
      expect(error.code).toBe('DENIED');
      expect(error.message).toMatch(/larger than this mirror fetches/);
      await waitFor(() => upstream.bodies.get(d)?.cut === true, 10_000, 'the upstream connection to close');
      expect(upstream.bodies.get(d)!.bytes).toBeLessThan(data.length);
      await leftNothing(d);
      expect(await refusals('too_large')).toBe(pull);
    }
    expect(ends).toMatchObject([
      { outcome: 'failed', bytes: 0, refused: { reason: 'too_large' } },
      { outcome: 'failed', bytes: 0, refused: { reason: 'too_large' } },
    ]);
    expect(await refusals('no_space')).toBe(0);
  });

  it('answers 507 with UNAVAILABLE before any header when the blob does not fit above fill.reserveBytes', async () => {
    // More than any disk this runs on: the real statfs refuses.
    await start({ reserveBytes: '1000TiB' });
    const declared = upstream.addBlob(randomBytes(1 * MiB));
    const chunked = upstream.addBlob(randomBytes(1 * MiB));
    upstream.faults.set(chunked, { chunked: true });
    // Whole with its headers: a body that has ended upstream but was never read.
    const small = upstream.addBlob(randomBytes(1000));
    for (const d of [declared, chunked, small]) {
      const res = await raw(blobUrl(d));
      expect(res.status).toBe(507);
      expect(res.complete).toBe(true);
      const [error] = JSON.parse(res.body.toString()).errors;
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.message).toMatch(/mirror is out of space/);
      await leftNothing(d);
    }
    expect(ends).toMatchObject([
      { digest: declared, outcome: 'failed', bytes: 0, refused: { reason: 'no_space' } },
      { digest: chunked, outcome: 'failed', bytes: 0, refused: { reason: 'no_space' } },
      { digest: small, outcome: 'failed', bytes: 0, refused: { reason: 'no_space' } },
    ]);
    expect(await refusals('no_space')).toBe(3);
    expect(await refusals('too_large')).toBe(0);
  });

  it('serves and caches blobs up to the limits, with a declared size or without', async () => {
    await start({ maxBlobBytes: MiB });
    const declared = randomBytes(MiB);
    const chunked = randomBytes(MiB);
    const d1 = upstream.addBlob(declared);
    const d2 = upstream.addBlob(chunked);
    upstream.faults.set(d2, { chunked: true });
    for (const [d, data] of [
      [d1, declared],
      [d2, chunked],
    ] as const) {
      const res = await raw(blobUrl(d));
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.body.equals(data)).toBe(true);
    }
    await waitFor(() => limited.mirror.fills.size === 0, 15_000, 'fills to settle');
    expect(await limited.mirror.storage.blobs.stat(d1)).toEqual({ size: MiB });
    expect(await limited.mirror.storage.blobs.stat(d2)).toEqual({ size: MiB });
    expect(ends.map((e) => e.outcome)).toEqual(['committed', 'committed']);
    expect(await refusals('too_large')).toBe(0);
    expect(await refusals('no_space')).toBe(0);
  });
});
