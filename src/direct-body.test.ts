import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { bufferShare, DirectBody, ResponseLink } from './direct-body.js';

const MiB = 1024 * 1024;

describe('bufferShare', () => {
  it('gives few bodies large buffers and many bodies small ones, their sum near 16 MiB', () => {
    expect(bufferShare(1, 4 * MiB)).toBe(4 * MiB);
    expect(bufferShare(2, 4 * MiB)).toBe(4 * MiB);
    expect(bufferShare(4, 4 * MiB)).toBe(2 * MiB);
    expect(bufferShare(10, 4 * MiB)).toBe(768 * 1024);
    for (const n of [1, 3, 10, 50, 128]) expect(2 * n * bufferShare(n, 4 * MiB)).toBeLessThanOrEqual(16 * MiB);
  });

  it('gives no more than what is left of the budget, but never less than 64 KiB', () => {
    expect(bufferShare(1, 4 * MiB, 3 * MiB)).toBe(3 * MiB);
    expect(bufferShare(2, 4 * MiB, 100 * 1024)).toBe(64 * 1024);
    expect(bufferShare(2, 4 * MiB, 0)).toBe(64 * 1024);
  });

  it('never goes below 64 KiB nor above what the body asks for', () => {
    expect(bufferShare(300, 4 * MiB)).toBe(64 * 1024);
    expect(bufferShare(0, 256 * 1024)).toBe(256 * 1024);
    expect(bufferShare(1, 256 * 1024)).toBe(256 * 1024);
  });
});

/** A body that takes its two buffers, then holds them until `release` (one per body sent). */
class HoldingBody extends DirectBody {
  static sizes: number[] = [];
  static release: Array<() => void> = [];
  protected override async send(to: ResponseLink, end: boolean): Promise<boolean> {
    HoldingBody.sizes.push(this.ownBuffer(4 * MiB).length, this.ownBuffer(4 * MiB).length);
    await new Promise<void>((resolve) => HoldingBody.release.push(resolve));
    to.write(Buffer.from('x'));
    return this.finish(to, end);
  }
}

describe('DirectBody buffers', () => {
  it('stay within the budget together, whatever the number of bodies, and go back to it when they end', async () => {
    const server = createServer((_req, res) => void pipeline(new HoldingBody(), res).catch(() => {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const fetchOne = () =>
      new Promise<string>((resolve, reject) => {
        get({ host: '127.0.0.1', port, agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString())).on('end', () => resolve(body));
        }).on('error', reject);
      });
    try {
      const waitHeld = async (n: number) => {
        for (let i = 0; i < 500 && HoldingBody.release.length < n; i++) await new Promise((r) => setTimeout(r, 10));
        expect(HoldingBody.release.length).toBe(n);
      };
      // One after another, as clients arrive: the first ones would each take a large share.
      const bodies: Array<Promise<string>> = [];
      for (let i = 0; i < 20; i++) {
        bodies.push(fetchOne());
        await waitHeld(i + 1);
      }
      const total = HoldingBody.sizes.reduce((a, b) => a + b, 0);
      expect(total).toBeLessThanOrEqual(16 * MiB + 40 * 64 * 1024);
      expect(HoldingBody.sizes[0]).toBe(4 * MiB);
      for (const release of HoldingBody.release.splice(0)) release();
      expect(await Promise.all(bodies)).toEqual(Array(20).fill('x'));
      // Given back: a body alone takes the largest buffers again.
      HoldingBody.sizes = [];
      const alone = fetchOne();
      await waitHeld(1);
      expect(HoldingBody.sizes).toEqual([4 * MiB, 4 * MiB]);
      HoldingBody.release.splice(0)[0]!();
      await alone;
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
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
