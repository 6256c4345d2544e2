/** Fill limits: the largest blob, room on the spool's file system, and a disk that fills mid-fill. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fsBlobStore } from '../../adapters/fs/index.js';
import { parseDigest } from '../reference.js';
import type { BlobStore } from '../storage.js';
import { createFills, type FillsOptions } from './index.js';
import { createFillLimits, FillRefusal } from './limits.js';

// Only the spool's handle is ever swapped (see the ENOSPC test); every other open is the real one.
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  return { ...actual, open: vi.fn(actual.open) };
});

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const D = `sha256:${'a'.repeat(64)}`;
const never = () => 0;

async function refusal(promise: Promise<unknown>): Promise<FillRefusal> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FillRefusal);
  return err as FillRefusal;
}

describe('createFillLimits', () => {
  it('refuses a declared size over maxBlobBytes as DENIED, without asking the file system', async () => {
    const freeBytes = vi.fn(async () => 100 * GiB);
    const limits = createFillLimits({ maxBlobBytes: GiB, freeBytes });
    const err = await refusal(limits.admit(D, '/spool', GiB + 1, never));
    expect(err).toMatchObject({ reason: 'too_large', code: 'DENIED', status: 403, name: 'OciError' });
    expect(freeBytes).not.toHaveBeenCalled();
    // The limit itself is allowed.
    const release = await limits.admit(D, '/spool', GiB, never);
    release();
    // A HEAD's question gets admit's answer, without admitting anything.
    expect(() => limits.checkDeclared(D, GiB + 1)).toThrow(expect.objectContaining({ reason: 'too_large', code: 'DENIED', message: err.message }));
    expect(() => limits.checkDeclared(D, GiB)).not.toThrow();
    expect(() => limits.checkDeclared(D, undefined)).not.toThrow();
  });

  it('counts the declared bytes of admitted fills not yet written, so two at once cannot share the room', async () => {
    const limits = createFillLimits({ reserveBytes: GiB, freeBytes: async () => 10 * GiB });
    const outcomes = await Promise.allSettled([limits.admit(D, '/spool', 5 * GiB, never), limits.admit(D, '/spool', 5 * GiB, never)]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = outcomes.find((o) => o.status === 'rejected')!.reason as FillRefusal;
    expect(refused).toMatchObject({ reason: 'no_space', code: 'UNAVAILABLE', status: 507 });
    expect(refused.message).toMatch(/out of space/);
    // Once the first one is done, its promise no longer counts.
    (outcomes.find((o) => o.status === 'fulfilled') as PromiseFulfilledResult<() => void>).value();
    (await limits.admit(D, '/spool', 5 * GiB, never))();
  });

  it('counts only what an admitted fill has still to write', async () => {
    let written = 0;
    const free = async () => 10 * GiB - written;
    const limits = createFillLimits({ reserveBytes: GiB, freeBytes: free });
    const release = await limits.admit(D, '/spool', 6 * GiB, () => written);
    await refusal(limits.admit(D, '/spool', 4 * GiB, never));
    written = 6 * GiB;
    (await limits.admit(D, '/spool', 3 * GiB, never))();
    release();
  });

  it('checks a fill of undeclared size against the reserve alone', async () => {
    let free = 1.5 * GiB;
    const limits = createFillLimits({ reserveBytes: GiB, freeBytes: async () => free });
    (await limits.admit(D, '/spool', undefined, never))();
    free = 0.5 * GiB;
    const err = await refusal(limits.admit(D, '/spool', undefined, never));
    expect(err).toMatchObject({ reason: 'no_space', status: 507 });
    expect(err.message).toMatch(/out of space/);
  });

  it('admits when the file system cannot say how much is free', async () => {
    const limits = createFillLimits({ freeBytes: () => Promise.reject(new Error('ENOSYS')) });
    (await limits.admit(D, '/spool', GiB, never))();
  });

  it('asks the real file system by default', async () => {
    const dir = tmpdir();
    await refusal(createFillLimits({ reserveBytes: Number.MAX_SAFE_INTEGER }).admit(D, dir, 1, never));
    (await createFillLimits({ reserveBytes: 0 }).admit(D, dir, 1, never))();
  });

  it('cuts a body without a declared size once it passes maxBlobBytes', () => {
    const limits = createFillLimits({ maxBlobBytes: MiB });
    expect(() => limits.checkReceived(D, MiB)).not.toThrow();
    expect(() => limits.checkReceived(D, MiB + 1)).toThrow(expect.objectContaining({ reason: 'too_large', code: 'DENIED' }));
  });
});

// Both commit paths, as in middleware/blob-cache/index.test.ts: the fs store adopting the spool, and a
// store without local files (S3, Keyv) that spools into `spoolDir` and takes the bytes by put().
describe.each([
  ['spool adopt', false],
  ['streaming put', true],
])('fills under limits (%s)', (_label, withoutSpool) => {
  let root: string;
  let spoolDir: string;
  let store: BlobStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'fill-limits-'));
    spoolDir = join(root, 'spool');
    const fs = fsBlobStore({ path: join(root, 'store'), fsync: false });
    if (withoutSpool) {
      const { spool: _spool, ...rest } = fs;
      store = rest;
    } else store = fs;
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const fillsWith = (options: Partial<FillsOptions>) => createFills({ store, spoolDir, timeout: 30_000, ...options });
  const digestOf = (data: Buffer) => parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`);

  /** Spool files of either kind: the fs store's own tmp/ and `spoolDir`. */
  async function spooled(): Promise<string[]> {
    const entries = await readdir(root, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile() && !e.parentPath.includes(join('store', 'blobs'))).map((e) => e.name);
  }

  /** A body that never ends on its own (bounded for the test's sake at 256 MiB); counts what was pulled. */
  function endless(): { body: Readable; pulled: () => number } {
    const chunk = randomBytes(64 * KiB);
    let pulled = 0;
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < 4096; i++) {
          pulled += chunk.length;
          yield chunk;
        }
      })(),
    );
    return { body, pulled: () => pulled };
  }

  it('cuts an endless body at maxBlobBytes, keeps nothing, and fails its readers', async () => {
    const fills = fillsWith({ maxBlobBytes: MiB });
    const { body, pulled } = endless();
    const fill = fills.acquire(parseDigest(D), async () => ({ size: undefined, body }));
    expect(await fill.ready).toEqual({ size: undefined });
    const reader = await fill.reader();
    // Read alongside the fill, as a client would; its end is looked at once the fill is over.
    const read = refusal(
      (async () => {
        for await (const _ of reader);
      })(),
    );
    expect(await refusal(fill.done)).toMatchObject({ reason: 'too_large', code: 'DENIED' });
    expect(await read).toMatchObject({ reason: 'too_large' });
    expect(fill.refused).toBe('too_large');
    expect(fill.received).toBeLessThanOrEqual(MiB);
    expect(pulled()).toBeLessThan(64 * MiB);
    expect(body.destroyed).toBe(true);
    expect(await store.stat(D)).toBeUndefined();
    expect(await spooled()).toEqual([]);
    expect(fills.size).toBe(0);
  });

  it('refuses a declared size over maxBlobBytes before ready, without reading the body', async () => {
    const fills = fillsWith({ maxBlobBytes: MiB });
    const read = vi.fn();
    // Like undici's: destroyed before its end, it emits an error.
    const body = new Readable({ read, destroy: (err, cb) => cb(err ?? new Error('aborted')) });
    const fill = fills.acquire(parseDigest(D), async () => ({ size: MiB + 1, body }));
    expect(await refusal(fill.ready)).toMatchObject({ reason: 'too_large', code: 'DENIED', status: 403 });
    await refusal(fill.done);
    expect(read).not.toHaveBeenCalled();
    expect(body.destroyed).toBe(true);
    expect(fill.written).toBe(0);
    expect(await spooled()).toEqual([]);
  });

  it('lets one of two fills that start together have the room that fits one', async () => {
    const fills = fillsWith({ reserveBytes: MiB, freeBytes: async () => 10 * MiB });
    const blobs = [randomBytes(6 * MiB), randomBytes(6 * MiB)];
    // No byte flows before both have been answered: neither has written anything when the other asks.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const body = (data: Buffer) =>
      Readable.from(
        (async function* () {
          await gate;
          yield data;
        })(),
      );
    const started = blobs.map((data) => fills.acquire(digestOf(data), async () => ({ size: data.length, body: body(data) })));
    const ready = await Promise.allSettled(started.map((f) => f.ready));
    open();
    expect(ready.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = started.find((f) => f.refused)!;
    expect(refused.refused).toBe('no_space');
    expect(await refusal(refused.ready)).toMatchObject({ code: 'UNAVAILABLE', status: 507 });
    const admitted = started.find((f) => f !== refused)!;
    await admitted.done;
    expect(await store.stat(admitted.digest.value)).toEqual({ size: 6 * MiB });
    expect(await store.stat(refused.digest.value)).toBeUndefined();
    expect(await spooled()).toEqual([]);
  });

  // Not a limit of ours: another writer filled the disk mid-fill. It must end like any failed fill.
  it('fails cleanly on ENOSPC mid-fill: the spool is removed and nothing is committed', async () => {
    const actual = await vi.importActual<typeof import('node:fs/promises')>('node:fs/promises');
    vi.mocked(open).mockImplementation(async (...args: Parameters<typeof open>) => {
      const handle = await actual.open(...args);
      if (!String(args[0]).endsWith('.fill')) return handle;
      let writes = 0;
      const writev = handle.writev.bind(handle);
      return Object.assign(handle, {
        writev: (async (buffers, position) => {
          if (++writes > 1) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
          return writev(buffers, position);
        }) as FileHandle['writev'],
      });
    });
    try {
      const data = randomBytes(4 * MiB);
      const fills = fillsWith({});
      const chunks = Array.from({ length: 16 }, (_, i) => data.subarray(i * 256 * KiB, (i + 1) * 256 * KiB));
      const fill = fills.acquire(digestOf(data), async () => ({ size: data.length, body: Readable.from(chunks) }));
      await fill.ready;
      await expect(fill.done).rejects.toMatchObject({ code: 'ENOSPC' });
      expect(fill.refused).toBeUndefined();
      expect(await store.stat(fill.digest.value)).toBeUndefined();
      expect(await spooled()).toEqual([]);
    } finally {
      vi.mocked(open).mockReset();
    }
  });
});
