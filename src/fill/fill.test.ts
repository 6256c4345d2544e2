import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline, Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fsBlobStore } from '../../adapters/fs/index.js';
import { parseDigest } from '../reference.js';
import { Fill } from './fill.js';
import { createFillLimits } from './limits.js';

describe('Fill', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fill-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const start = (data: Buffer | Readable, beforeCommit?: () => Promise<unknown>, size = Buffer.isBuffer(data) ? data.length : undefined, digestOf?: Buffer) => {
    const store = fsBlobStore({ path: dir, fsync: false });
    const digest = parseDigest(`sha256:${createHash('sha256').update(digestOf ?? (data as Buffer)).digest('hex')}`);
    const body = Buffer.isBuffer(data) ? Readable.from([data]) : data;
    const fill = new Fill(digest, async () => ({ size, body, beforeCommit: beforeCommit?.() }), {
      store,
      spoolDir: join(dir, 'spool'),
      signal: new AbortController().signal,
      timeout: 60_000,
      limits: createFillLimits({ freeBytes: async () => Number.MAX_SAFE_INTEGER }),
    });
    return { fill, store, digest };
  };

  it('commits only once what the source started before the commit has succeeded', async () => {
    const data = randomBytes(300_000);
    let finish!: () => void;
    const { fill, store, digest } = start(data, () => new Promise<void>((r) => (finish = r)));
    const body = fill.reader();
    // Verified is as far as it goes without that work: the commit waits on it (no timing: a busy machine may take any time to get here).
    for (let i = 0; i < 1000 && fill.state !== 'verified'; i++) await new Promise((r) => setTimeout(r, 5));
    expect(fill.state).toBe('verified');
    await new Promise((r) => setTimeout(r, 20));
    expect(fill.state).toBe('verified');
    finish();
    await fill.done;
    expect(await store.stat(digest.value)).toEqual({ size: data.length });
    expect((await text(await body)).length).toBeGreaterThan(0);
  });

  it('fails, commits nothing and leaves no spool behind when that work fails', async () => {
    const data = randomBytes(300_000);
    const { fill, store, digest } = start(data, async () => {
      await new Promise((r) => setTimeout(r, 10));
      throw new Error('link record not written');
    });
    await expect(fill.done).rejects.toThrow('link record not written');
    expect(fill.state).toBe('failed');
    expect(await store.stat(digest.value)).toBeUndefined();
    // The spool's directory may stay; no file in it may.
    expect((await readdir(join(dir, 'tmp'), { recursive: true }).catch(() => [])).filter((f) => f !== 'spool')).toEqual([]);
  });

  it('writes straight into an HTTP response piped as koa pipes, from memory and from the spool', async () => {
    const data = randomBytes(6 * 1024 * 1024);
    // The body arrives in two halves: a reader that joins late finds the first half only in the spool.
    let second!: () => void;
    const halves = new Readable({ read() {} });
    halves.push(data.subarray(0, 3 * 1024 * 1024));
    void new Promise<void>((r) => (second = r)).then(() => {
      halves.push(data.subarray(3 * 1024 * 1024));
      halves.push(null);
    });
    const { fill } = start(halves, undefined, data.length, data);
    let pushes = 0;
    const server: Server = createServer((_req, res) => {
      void fill.reader().then((reader) => {
        const read = reader._read.bind(reader);
        reader._read = () => {
          pushes++; // the ordinary Readable path
          read(0);
        };
        res.setHeader('content-length', String(data.length));
        pipeline(reader, res, () => {});
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      while (fill.written < 3 * 1024 * 1024) await fill.changed();
      const got = new Promise<Buffer>((resolve, reject) =>
        request({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' }, (res) => buffer(res).then(resolve, reject))
          .on('error', reject)
          .end(),
      );
      second();
      expect((await got).equals(data)).toBe(true);
      expect(pushes).toBe(0);
      await fill.done;
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
