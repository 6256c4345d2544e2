import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
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

  const start = (data: Buffer, beforeCommit?: () => Promise<unknown>) => {
    const store = fsBlobStore({ path: dir, fsync: false });
    const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`);
    const fill = new Fill(digest, async () => ({ size: data.length, body: Readable.from([data]), beforeCommit: beforeCommit?.() }), {
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
    await new Promise((r) => setTimeout(r, 50));
    expect(fill.state).not.toBe('committed');
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
});
