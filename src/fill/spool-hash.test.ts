import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseDigest } from '../reference.js';
import { hashThreadRunning, SpoolHash } from './spool-hash.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('SpoolHash', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spool-hash-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('hashes what was written, in steps, from an unlinked spool file', async () => {
    const data = randomBytes(20 * 1024 * 1024 + 123); // more than one slice of the worker's
    const handle = await open(join(dir, 'a.fill'), 'w+');
    await unlink(join(dir, 'a.fill'));
    const hash = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(data)}`));
    try {
      for (let at = 0; at < data.length; at += 3 * 1024 * 1024) {
        const part = data.subarray(at, at + 3 * 1024 * 1024);
        await handle.write(part, 0, part.length, at);
        hash.written(at + part.length);
      }
      expect(await hash.digest(data.length)).toBe(sha256(data));
    } finally {
      await hash.close();
      await handle.close();
    }
  });

  it('hashes only the first `size` bytes, and an empty blob too', async () => {
    const handle = await open(join(dir, 'b.fill'), 'w+');
    const empty = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(Buffer.alloc(0))}`));
    expect(await empty.digest(0)).toBe(sha256(Buffer.alloc(0)));
    const data = Buffer.from('hello, spool');
    await handle.write(data, 0, data.length, 0);
    const hash = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(data)}`));
    expect(await hash.digest(5)).toBe(sha256(data.subarray(0, 5)));
    await handle.close();
  });

  it('keeps fills apart when several hash at once', async () => {
    const blobs = [randomBytes(3_000_000), randomBytes(5_000_000), randomBytes(1)];
    const handles = await Promise.all(blobs.map((_, i) => open(join(dir, `${i}.fill`), 'w+')));
    const hashes = blobs.map((b, i) => new SpoolHash(handles[i]!.fd, parseDigest(`sha256:${sha256(b)}`)));
    await Promise.all(blobs.map((b, i) => handles[i]!.write(b, 0, b.length, 0)));
    blobs.forEach((b, i) => hashes[i]!.written(b.length));
    expect(await Promise.all(blobs.map((b, i) => hashes[i]!.digest(b.length)))).toEqual(blobs.map(sha256));
    await Promise.all(handles.map((h) => h.close()));
  });

  it('fails, naming the cause, when the spool is shorter than it was said to be', async () => {
    const handle = await open(join(dir, 'short.fill'), 'w+');
    await handle.write(Buffer.from('abc'), 0, 3, 0);
    const hash = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(Buffer.from('abcdef'))}`));
    await expect(hash.digest(6)).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/spool file ended at 3 bytes/) });
    await hash.close();
    await handle.close();
  });

  it('lets go of the file on close: the worker reads nothing after it resolves', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const handle = await open(join(dir, 'c.fill'), 'w+');
    await handle.write(data, 0, data.length, 0);
    const hash = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(data)}`));
    hash.written(data.length);
    await hash.close();
    // Were the worker still reading, closing the descriptor now could feed it another file's bytes.
    await handle.close();
    await hash.close(); // twice is harmless
  });

  it('ends its worker thread once no fill has needed it for 30 s, and starts one again for the next', async () => {
    const data = Buffer.from('idle worker');
    const handle = await open(join(dir, 'd.fill'), 'w+');
    await handle.write(data, 0, data.length, 0);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const first = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(data)}`));
      expect(await first.digest(data.length)).toBe(sha256(data));
      expect(hashThreadRunning()).toBe(true);
      vi.advanceTimersByTime(29_000);
      expect(hashThreadRunning()).toBe(true);
      vi.advanceTimersByTime(1_000);
      expect(hashThreadRunning()).toBe(false);
      const next = new SpoolHash(handle.fd, parseDigest(`sha256:${sha256(data)}`));
      expect(await next.digest(data.length)).toBe(sha256(data));
      expect(hashThreadRunning()).toBe(true);
    } finally {
      vi.useRealTimers();
      await handle.close();
    }
  });
});
