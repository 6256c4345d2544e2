import { PassThrough } from 'node:stream';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { bufferShare, ResponseLink } from './direct-body.js';

const MiB = 1024 * 1024;

describe('bufferShare', () => {
  it('gives few bodies large buffers and many bodies small ones, each share within 8 MiB', () => {
    expect(bufferShare(1, 4 * MiB)).toBe(4 * MiB);
    expect(bufferShare(2, 4 * MiB)).toBe(2 * MiB);
    expect(bufferShare(4, 4 * MiB)).toBe(MiB);
    expect(bufferShare(10, 4 * MiB)).toBe(384 * 1024);
    for (const n of [1, 3, 10, 50, 64]) expect(2 * n * bufferShare(n, 4 * MiB)).toBeLessThanOrEqual(8 * MiB);
  });

  it('adds up, for bodies that start one after another, to what the README says: 23 MiB for ten, about 40 for a hundred', () => {
    const held = (n: number) => Array.from({ length: n }, (_, i) => 2 * bufferShare(i + 1, 4 * MiB)).reduce((a, b) => a + b, 0);
    expect(held(10)).toBe(23.125 * MiB);
    expect(held(100)).toBe(39.5 * MiB);
  });

  it('never goes below 64 KiB nor above what the body asks for', () => {
    expect(bufferShare(300, 4 * MiB)).toBe(64 * 1024);
    expect(bufferShare(0, 256 * 1024)).toBe(256 * 1024);
    expect(bufferShare(1, 256 * 1024)).toBe(256 * 1024);
  });
});

describe('ResponseLink', () => {
  /** A response whose reader takes everything, with a small buffer so that writes wait for drains. */
  const response = () => {
    const res = new PassThrough({ highWaterMark: 1024 });
    res.resume();
    return res;
  };

  it('ends every kind of wait at the close, and passes a rejection on', async () => {
    const res = new PassThrough({ highWaterMark: 1024 });
    const link = new ResponseLink(res);
    link.write(Buffer.alloc(4096));
    await new Promise((resolve) => process.nextTick(resolve));
    const waits = [link.drained(), link.until(new Promise(() => {})), link.writeOwned(Buffer.alloc(10))];
    res.destroy();
    await expect(Promise.all(waits)).resolves.toBeDefined();
    // Once closed, nothing waits at all.
    await expect(link.until(new Promise(() => {}))).resolves.toBeUndefined();
    await expect(new ResponseLink(response()).until(Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });

  it('keeps nothing of a wait that has ended while the response stays open', async () => {
    // What a body on a long response does: a wait or two per chunk, thousands of them. Each
    // finished wait must be garbage; kept until the close, they would grow with the blob.
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const link = new ResponseLink(response());
    const finished: Array<WeakRef<Promise<unknown>>> = [];
    for (let i = 0; i < 200; i++) {
      const waits = [link.until(Promise.resolve()), link.writeOwned(Buffer.alloc(2048)), link.drained()];
      await Promise.all(waits);
      for (const w of waits) finished.push(new WeakRef(w));
    }
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const kept = finished.filter((w) => w.deref() !== undefined).length;
    expect(kept).toBeLessThan(10);
  });
});
