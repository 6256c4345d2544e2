/**
 * The BlobStore contract as tests, for every adapter to run with one line:
 *
 *   blobStoreConformance('fs', async () => ({ store: fsBlobStore({ path }), cleanup: () => rm(path) }));
 *
 * Optional members of the store (`recover`, `spool`) are tested when present; optional
 * hooks of the harness let the suite look at what a store hides (temporary data).
 */
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeEach, describe, expect, it } from 'vitest';
import { digestOf } from '../../src/digest.js';
import type { BlobReadOptions, BlobStore } from '../../src/storage.js';
import {
  chunked,
  collect,
  harnessPerTest,
  isOrWraps,
  pseudoRandomBytes,
  readSummary,
  rejection,
  stallingSource,
  summary,
} from './helpers.js';

export interface BlobStoreHarness {
  /** A fresh, empty store. */
  store: BlobStore;
  /** Removes whatever the store wrote; runs after `store.close()`. */
  cleanup(): Promise<void>;
  /** Counts temporary data (temp files, open multipart uploads); when given, every failed put must leave 0. */
  countTemporary?(): Promise<number>;
  /** Leaves temporary data the way a process killed mid-put would; with `countTemporary`, enables the recover() test. */
  leaveTemporary?(): Promise<void>;
  /** Runs recover() of a second store over the same data built with the age `ms` (`recoverOlderThan`); enables the test of an age. */
  recoverOlderThan?(ms: number): Promise<void>;
}

export interface BlobStoreConformanceOptions {
  /** Size of the large round-trip; 0 switches it off (default 20 MiB). */
  largeBlobBytes?: number;
}

const MiB = 1024 * 1024;

export function blobStoreConformance(
  name: string,
  factory: () => Promise<BlobStoreHarness>,
  { largeBlobBytes = 20 * MiB }: BlobStoreConformanceOptions = {},
): void {
  describe(`BlobStore conformance: ${name}`, () => {
    const current = harnessPerTest(factory);
    let harness: BlobStoreHarness;
    let store: BlobStore;
    beforeEach(() => {
      harness = current();
      store = harness.store;
    });

    const data = pseudoRandomBytes(100_000, 7);
    const digest = digestOf(data);
    const other = pseudoRandomBytes(5_000, 8);

    async function listed(): Promise<Array<{ digest: string; size: number }>> {
      return (await collect(store.list())).sort((a, b) => a.digest.localeCompare(b.digest));
    }

    async function expectAbsent(d: string): Promise<void> {
      expect(await store.stat(d)).toBeUndefined();
      expect(await store.read(d)).toBeUndefined();
      expect((await listed()).map((e) => e.digest)).not.toContain(d);
    }

    async function expectNoTemporaries(): Promise<void> {
      if (harness.countTemporary) expect(await harness.countTemporary()).toBe(0);
    }

    describe('round trips', () => {
      it('reads back, stats and lists a blob it was given', async () => {
        expect(await store.put(digest, Readable.from([data]))).toEqual({ size: data.length });
        expect(await store.stat(digest)).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        expect(await listed()).toEqual([{ digest, size: data.length }]);
        await expectNoTemporaries();
      });

      it('accepts an async iterable of plain Uint8Array chunks and a matching size', async () => {
        expect(await store.put(digest, chunked(data, 4096), { size: data.length })).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
      });

      it('keeps an empty blob', async () => {
        const empty = digestOf(new Uint8Array());
        expect(await store.put(empty, Readable.from([]), { size: 0 })).toEqual({ size: 0 });
        expect(await store.stat(empty)).toEqual({ size: 0 });
        expect(await readSummary(await store.read(empty))).toEqual(summary(new Uint8Array()));
        expect(await listed()).toEqual([{ digest: empty, size: 0 }]);
      });

      it('keeps sha512 blobs apart from sha256 blobs of the same bytes', async () => {
        const sha512 = digestOf(data, 'sha512');
        await store.put(sha512, Readable.from([data]));
        expect(await store.stat(digest)).toBeUndefined();
        await store.put(digest, Readable.from([data]));
        expect(await readSummary(await store.read(sha512))).toEqual(summary(data));
        expect(await store.delete(sha512)).toBe(true);
        expect(await store.stat(sha512)).toBeUndefined();
        expect(await store.stat(digest)).toEqual({ size: data.length });
      });

      it('lists every committed blob once, with its size', async () => {
        const blobs = [data, other, pseudoRandomBytes(1, 9)];
        for (const blob of blobs) await store.put(digestOf(blob), Readable.from([blob]));
        await store.put(digestOf(other, 'sha512'), Readable.from([other]));
        await store.put(digestOf(other), Readable.from([other]));
        const expected = [
          ...blobs.map((b) => ({ digest: digestOf(b), size: b.length })),
          { digest: digestOf(other, 'sha512'), size: other.length },
        ].sort((a, b) => a.digest.localeCompare(b.digest));
        expect(await listed()).toEqual(expected);
      });

      it('deletes, answering false the second time, and takes the same digest again', async () => {
        await store.put(digest, Readable.from([data]));
        expect(await store.delete(digest)).toBe(true);
        await expectAbsent(digest);
        expect(await store.delete(digest)).toBe(false);
        await store.put(digest, Readable.from([data]));
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
      });

      it('resolves a second put of a committed digest and keeps the bytes', async () => {
        await store.put(digest, Readable.from([data]));
        expect(await store.put(digest, chunked(data, 1000))).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        expect(await listed()).toEqual([{ digest, size: data.length }]);
      });
    });

    describe('absent blobs are undefined, not errors', () => {
      it('on every method of an empty store', async () => {
        expect(await store.stat(digest)).toBeUndefined();
        expect(await store.read(digest)).toBeUndefined();
        expect(await store.read(digest, { start: 0, end: 0 })).toBeUndefined();
        expect(await store.delete(digest)).toBe(false);
        expect(await listed()).toEqual([]);
      });

      it('for a digest beside a committed one', async () => {
        await store.put(digest, Readable.from([data]));
        await expectAbsent(digestOf(other));
      });
    });

    describe('ranges (inclusive, HTTP style)', () => {
      // Spans several read chunks so that a range crossing chunk boundaries is exercised.
      const big = pseudoRandomBytes(2 * MiB + 1234, 11);
      const bigDigest = digestOf(big);
      const n = big.length;
      const cases: Array<[string, BlobReadOptions, Buffer]> = [
        ['start only', { start: 1000 }, big.subarray(1000)],
        ['end only', { end: 99 }, big.subarray(0, 100)],
        ['start and end', { start: 10, end: 19 }, big.subarray(10, 20)],
        ['across chunk boundaries', { start: MiB - 3, end: 2 * MiB + 3 }, big.subarray(MiB - 3, 2 * MiB + 4)],
        ['a single byte', { start: 500, end: 500 }, big.subarray(500, 501)],
        ['the first byte', { start: 0, end: 0 }, big.subarray(0, 1)],
        ['the last byte', { start: n - 1, end: n - 1 }, big.subarray(n - 1)],
        ['the last byte, start only', { start: n - 1 }, big.subarray(n - 1)],
        ['the whole blob', { start: 0, end: n - 1 }, big],
      ];
      it.each(cases)('%s', async (_label, range, expected) => {
        await store.put(bigDigest, Readable.from([big]));
        expect(await readSummary(await store.read(bigDigest, range))).toEqual(summary(expected));
      });
    });

    describe('a failed put leaves nothing behind', () => {
      it('rejects content that does not hash to the digest with DIGEST_INVALID', async () => {
        await expect(store.put(digest, Readable.from([other]))).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it('rejects content one byte short with DIGEST_INVALID', async () => {
        await expect(store.put(digest, Readable.from([data.subarray(1)]))).rejects.toMatchObject({
          code: 'DIGEST_INVALID',
        });
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it.each([
        ['longer', data.length - 1],
        ['shorter', data.length + 1],
      ])('rejects content %s than the given size with SIZE_INVALID', async (_label, size) => {
        await expect(store.put(digest, Readable.from([data]), { size })).rejects.toMatchObject({
          code: 'SIZE_INVALID',
        });
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it('rejects malformed digests with DIGEST_INVALID on every method', async () => {
        const hex = digest.slice('sha256:'.length);
        const bad = [
          'sha256:../../../../etc/passwd',
          `sha256:${hex.toUpperCase()}`,
          `sha256:${hex.slice(1)}`,
          `md5:${hex.slice(0, 32)}`,
          `../sha256:${hex}`,
          hex,
          '',
        ];
        for (const d of bad) {
          await expect(store.stat(d), d).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
          await expect(store.read(d), d).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
          await expect(store.delete(d), d).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
          await expect(store.put(d, Readable.from([data])), d).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
        }
        expect(await listed()).toEqual([]);
        await expectNoTemporaries();
      });

      // An unread HTTP body holds its connection; a put that refuses a source must still end it.
      it('ends a Readable source it refuses before reading', async () => {
        const refused = [
          () => Readable.from([data]),
          () => new Readable({ read() {} }),
        ];
        for (const make of refused) {
          const early = make();
          await expect(store.put('sha256:nope', early)).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
          expect(early.destroyed).toBe(true);
          const aborted = make();
          await expect(store.put(digest, aborted, { signal: AbortSignal.abort() })).rejects.toBeDefined();
          expect(aborted.destroyed).toBe(true);
        }
      });

      it('rejects with the cause when an async iterable source fails mid-stream', async () => {
        const boom = new Error('upstream reset');
        const source = stallingSource(data.subarray(0, 1000));
        const put = store.put(digest, source.source);
        await source.taken;
        source.fail(boom);
        const err = await rejection(put);
        expect(isOrWraps(err, boom)).toBe(true);
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it('rejects with the cause when a Readable source is destroyed mid-stream', async () => {
        const boom = new Error('socket hang up');
        let reads = 0;
        const source = new Readable({
          read() {
            if (reads++ === 0) this.push(data.subarray(0, 1000));
            else this.destroy(boom);
          },
        });
        const err = await rejection(store.put(digest, source));
        expect(isOrWraps(err, boom)).toBe(true);
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it('rejects when aborted mid-put, even while the source is silent', async () => {
        const controller = new AbortController();
        const reason = new Error('client went away');
        const source = stallingSource(data.subarray(0, 1000), data.subarray(1000));
        const put = store.put(digest, source.source, { signal: controller.signal });
        await source.taken;
        controller.abort(reason);
        const err = await rejection(put);
        expect(isOrWraps(err, reason) || (err as Error | undefined)?.name === 'AbortError').toBe(true);
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it('rejects at once when the signal is already aborted', async () => {
        const reason = new Error('too late');
        const err = await rejection(store.put(digest, Readable.from([data]), { signal: AbortSignal.abort(reason) }));
        expect(isOrWraps(err, reason) || (err as Error | undefined)?.name === 'AbortError').toBe(true);
        await expectAbsent(digest);
        await expectNoTemporaries();
      });

      it('does not disturb a committed blob of the same digest', async () => {
        await store.put(digest, Readable.from([data]));
        await expect(store.put(digest, Readable.from([other]))).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
        const source = stallingSource(data.subarray(0, 10));
        const put = store.put(digest, source.source);
        await source.taken;
        source.fail(new Error('gone'));
        await expect(put).rejects.toThrow();
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        await expectNoTemporaries();
      });
    });

    describe('visibility and concurrency', () => {
      it('keeps a put in flight invisible until it completes', async () => {
        const source = stallingSource(data.subarray(0, 60_000), data.subarray(60_000));
        const put = store.put(digest, source.source);
        await source.taken;
        await expectAbsent(digest);
        source.finish();
        expect(await put).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
      });

      it('resolves five concurrent puts of one digest with one blob', async () => {
        const blob = pseudoRandomBytes(300_000, 13);
        const d = digestOf(blob);
        const results = await Promise.all(
          [100, 7777, 4096, 65536, 300_000].map((size) => store.put(d, chunked(blob, size), { size: blob.length })),
        );
        expect(results).toEqual(Array(5).fill({ size: blob.length }));
        expect(await readSummary(await store.read(d))).toEqual(summary(blob));
        expect(await listed()).toEqual([{ digest: d, size: blob.length }]);
        await expectNoTemporaries();
      });

      it('commits the good one of two concurrent puts when the other is corrupt', async () => {
        const [good, bad] = await Promise.allSettled([
          store.put(digest, chunked(data, 1000)),
          store.put(digest, chunked(Buffer.concat([data.subarray(0, 50_000), other]), 1000)),
        ]);
        expect(good).toEqual({ status: 'fulfilled', value: { size: data.length } });
        expect(bad).toMatchObject({ status: 'rejected', reason: { code: 'DIGEST_INVALID' } });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        await expectNoTemporaries();
      });
    });

    describe('read signals', () => {
      it('fails a read whose signal is already aborted', async () => {
        await store.put(digest, Readable.from([data]));
        const signal = AbortSignal.abort(new Error('gone'));
        await expect(store.read(digest, { signal }).then(readSummary)).rejects.toBeDefined();
      });

      it('ends a read when its signal aborts mid-stream', async () => {
        const blob = pseudoRandomBytes(4 * MiB, 17);
        const d = digestOf(blob);
        await store.put(d, Readable.from([blob]));
        const controller = new AbortController();
        const stream = await store.read(d, { signal: controller.signal });
        const chunks = stream![Symbol.asyncIterator]();
        await chunks.next();
        controller.abort(new Error('client went away'));
        await expect(
          (async () => {
            for (let r = await chunks.next(); !r.done; r = await chunks.next());
          })(),
        ).rejects.toBeDefined();
        expect(stream!.destroyed).toBe(true);
      });
    });

    it.runIf(largeBlobBytes > 0)(`round-trips a ${largeBlobBytes}-byte blob`, async () => {
      const blob = pseudoRandomBytes(largeBlobBytes, 21);
      const d = digestOf(blob);
      expect(await store.put(d, chunked(blob, 256 * 1024), { size: blob.length })).toEqual({ size: blob.length });
      expect(await store.stat(d)).toEqual({ size: blob.length });
      expect(await readSummary(await store.read(d))).toEqual(summary(blob));
      const start = Math.floor(blob.length / 3);
      expect(await readSummary(await store.read(d, { start, end: blob.length - 2 }))).toEqual(
        summary(blob.subarray(start, blob.length - 1)),
      );
    });

    describe('recover()', () => {
      it('is safe on a fresh store and twice in a row', async ({ skip }) => {
        if (!store.recover) return skip('no recover()');
        await store.recover();
        await store.recover();
        expect(await listed()).toEqual([]);
      });

      it('removes what a killed process left behind and keeps committed blobs', async ({ skip }) => {
        const { countTemporary, leaveTemporary } = harness;
        if (!store.recover || !countTemporary || !leaveTemporary) return skip('needs recover(), countTemporary and leaveTemporary');
        await store.put(digest, Readable.from([data]));
        await leaveTemporary();
        expect(await countTemporary()).toBeGreaterThan(0);
        await store.recover();
        expect(await countTemporary()).toBe(0);
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        expect(await listed()).toEqual([{ digest, size: data.length }]);
      });

      it('with an age, leaves younger leftovers and a put in flight alone, as another process runs it', async ({ skip }) => {
        const { countTemporary, leaveTemporary, recoverOlderThan } = harness;
        if (!store.recover || !countTemporary || !leaveTemporary || !recoverOlderThan) {
          return skip('needs recover(), countTemporary, leaveTemporary and recoverOlderThan');
        }
        await leaveTemporary();
        const left = await countTemporary();
        expect(left).toBeGreaterThan(0);
        const stalled = stallingSource(data.subarray(0, 40_000), data.subarray(40_000));
        const put = store.put(digest, stalled.source, { size: data.length });
        await stalled.taken;
        await recoverOlderThan(60_000);
        // The put's own temporary data may or may not count yet; the leftovers must all still be there.
        expect(await countTemporary()).toBeGreaterThanOrEqual(left);
        stalled.finish();
        expect(await put).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        await store.recover();
        expect(await countTemporary()).toBe(0);
      });
    });

    describe('spool capability', () => {
      it('adopts a verified file written into spool.dir and takes it away', async ({ skip }) => {
        const spool = store.spool;
        if (!spool) return skip('no spool');
        const file = join(spool.dir, 'fill-1');
        await writeFile(file, data);
        expect(await spool.adopt(digest, file, data.length)).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        expect(await listed()).toEqual([{ digest, size: data.length }]);
        await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
      });

      it('discards the file when the digest is already committed', async ({ skip }) => {
        const spool = store.spool;
        if (!spool) return skip('no spool');
        await store.put(digest, Readable.from([data]));
        const file = join(spool.dir, 'fill-2');
        await writeFile(file, data);
        expect(await spool.adopt(digest, file, data.length)).toEqual({ size: data.length });
        expect(await readSummary(await store.read(digest))).toEqual(summary(data));
        await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
        await expectNoTemporaries();
      });
    });
  });
}
