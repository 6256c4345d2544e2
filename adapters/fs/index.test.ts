import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { digestOf } from '../../src/digest.js';
import { blobStoreConformance } from '../../test/conformance/blob-store.js';
import { collect, pseudoRandomBytes, readSummary, stallingSource, summary } from '../../test/conformance/helpers.js';
import { metadataStoreConformance } from '../../test/conformance/metadata-store.js';
import { fsBlobStore, fsMetadataStore, fsStorage } from './index.js';

const freshRoot = () => mkdtemp(join(tmpdir(), 'oci-fs-'));
const removeRoot = (root: string) => rm(root, { recursive: true, force: true });

/** Every file below `dir`, relative to it, with `/` separators; none when `dir` is absent. */
async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

blobStoreConformance('fs', async () => {
  const root = await freshRoot();
  return {
    store: fsBlobStore({ path: root }),
    cleanup: () => removeRoot(root),
    countTemporary: async () => (await filesUnder(join(root, 'tmp'))).length,
    async leaveTemporary() {
      await mkdir(join(root, 'tmp', 'spool'), { recursive: true });
      await writeFile(join(root, 'tmp', 'half-written-put'), pseudoRandomBytes(1000));
      await writeFile(join(root, 'tmp', 'spool', 'half-written-fill'), pseudoRandomBytes(1000));
    },
    recoverOlderThan: (ms) => fsBlobStore({ path: root, recoverOlderThan: ms }).recover(),
  };
});

metadataStoreConformance('fs', async () => {
  const root = await freshRoot();
  return { store: fsMetadataStore({ path: root }), cleanup: () => removeRoot(root) };
});

describe('fs adapter', () => {
  let root: string;
  const data = pseudoRandomBytes(200_000, 3);
  const digest = digestOf(data);
  const hex = digest.slice('sha256:'.length);
  const blobFile = `blobs/sha256/${hex.slice(0, 2)}/${hex}`;

  beforeEach(async () => {
    root = await freshRoot();
  });

  afterEach(async () => {
    await removeRoot(root);
  });

  it('lays blobs out as blobs/<alg>/<2 hex>/<hex> and leaves tmp/ empty', async () => {
    const { blobs } = fsStorage({ path: root });
    await blobs.put(digest, Readable.from([data]));
    const sha512 = digestOf(data, 'sha512');
    await blobs.put(sha512, Readable.from([data]));
    const hex512 = sha512.slice('sha512:'.length);
    expect(await filesUnder(root)).toEqual([blobFile, `blobs/sha512/${hex512.slice(0, 2)}/${hex512}`].sort());
    expect(summary(await readFile(join(root, blobFile)))).toEqual(summary(data));
  });

  it('never shows a partial file under blobs/ while a slow put writes to tmp/', async () => {
    const store = fsBlobStore({ path: root });
    const chunk = 32 * 1024;
    const seen: number[] = [];
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < data.length; i += chunk) {
        if (i > 0) {
          // Wait until what was handed over so far is on disk, then look.
          await vi.waitFor(async () => {
            const temps = await filesUnder(join(root, 'tmp'));
            expect(temps).toHaveLength(1);
            expect((await stat(join(root, 'tmp', temps[0]!))).size).toBe(i);
          }, { interval: 1 });
          expect(await filesUnder(join(root, 'blobs'))).toEqual([]);
          expect(await store.stat(digest)).toBeUndefined();
          seen.push(i);
        }
        yield data.subarray(i, i + chunk);
      }
    }
    await store.put(digest, slow());
    expect(seen).toHaveLength(Math.ceil(data.length / chunk) - 1);
    expect(await filesUnder(root)).toEqual([blobFile]);
  });

  it('removes the temporary file when the commit itself fails', async () => {
    const store = fsBlobStore({ path: root });
    // A file where the fan-out directory should be makes the mkdir before the rename fail.
    await mkdir(join(root, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(root, 'blobs', 'sha256', hex.slice(0, 2)), 'in the way');
    await expect(store.put(digest, Readable.from([data]))).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await filesUnder(join(root, 'tmp'))).toEqual([]);
  });

  it('list() skips files it could not have written', async () => {
    const store = fsBlobStore({ path: root });
    await store.put(digest, Readable.from([data]));
    const stray = [
      `blobs/sha256/${hex.slice(0, 2)}/${hex}.bak`,
      `blobs/sha256/${hex.slice(0, 2)}/${'0'.repeat(64)}`,
      `blobs/sha256/zz/${hex}`,
      `blobs/md5/${hex.slice(0, 2)}/${hex.slice(0, 32)}`,
      'blobs/README',
    ];
    for (const file of stray) {
      await mkdir(join(root, file, '..'), { recursive: true });
      await writeFile(join(root, file), 'x');
    }
    expect(await collect(store.list())).toEqual([{ digest, size: data.length }]);
  });

  it('recover() clears what kill -9 left in tmp/ and nothing else', async () => {
    const storage = fsStorage({ path: root });
    await storage.blobs.put(digest, Readable.from([data]));
    await storage.meta.set('tag/docker.io/library/alpine:3.20', { digest });
    // A put and a fill cut off mid-write, and a record write cut off before its rename.
    const stalled = stallingSource(data.subarray(0, 1000));
    void storage.blobs.put(digest, stalled.source).catch(() => {});
    await stalled.taken;
    await writeFile(join(storage.blobs.spool.dir, 'fill'), data.subarray(0, 5000));
    await mkdir(join(root, 'tmp', 'some', 'dir'), { recursive: true });
    await writeFile(join(root, 'tmp', 'some', 'dir', 'junk'), 'junk');
    await writeFile(join(root, 'tmp', 'record'), '{"key":"tag/x","val');
    const before = await filesUnder(root);

    await storage.blobs.recover();
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect(await filesUnder(root)).toEqual(before.filter((f) => !f.startsWith('tmp/')));
    expect(await readSummary(await storage.blobs.read(digest))).toEqual(summary(data));
    expect(await storage.meta.get('tag/docker.io/library/alpine:3.20')).toEqual({ digest });
    // The spool directory comes back on the next fill.
    await writeFile(join(storage.blobs.spool.dir, 'next'), 'ok');
    stalled.fail(new Error('process is gone'));
  });

  it('recover() with recoverOlderThan removes only the files in tmp/ not written to for that long', async () => {
    const storage = fsStorage({ path: root, recoverOlderThan: 60_000 });
    await storage.blobs.put(digest, Readable.from([data]));
    const spool = storage.blobs.spool.dir;
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const [file, old] of [
      [join(spool, 'dead-fill'), true],
      [join(spool, 'live-fill'), false],
      [join(root, 'tmp', 'dead-put'), true],
      [join(root, 'tmp', 'live-record'), false],
      [join(root, 'tmp', 'some', 'dir', 'dead-junk'), true],
    ] as const) {
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, 'x');
      if (old) await utimes(file, hourAgo, hourAgo);
    }
    await storage.blobs.recover();
    expect(await filesUnder(join(root, 'tmp'))).toEqual(['live-record', 'spool/live-fill']);
    expect(await readSummary(await storage.blobs.read(digest))).toEqual(summary(data));
    // The default, at start-up: everything.
    await fsStorage({ path: root }).blobs.recover();
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });

  it('spool.adopt refuses a file of the wrong size and leaves it to the caller', async () => {
    const { spool } = fsBlobStore({ path: root });
    const file = join(spool.dir, 'fill');
    await writeFile(file, data);
    await expect(spool.adopt(digest, file, data.length + 1)).rejects.toMatchObject({ code: 'SIZE_INVALID' });
    await expect(spool.adopt('sha256:../../x', file, data.length)).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect((await stat(file)).size).toBe(data.length);
    expect(await filesUnder(join(root, 'blobs'))).toEqual([]);
  });

  it('works with fsync off', async () => {
    const storage = fsStorage({ path: root, fsync: false });
    await storage.blobs.put(digest, Readable.from([data]));
    const other = pseudoRandomBytes(10, 4);
    const file = join(storage.blobs.spool.dir, 'fill');
    await writeFile(file, other);
    await storage.blobs.spool.adopt(digestOf(other), file, other.length);
    await storage.meta.set('k', 'v');
    expect(await readSummary(await storage.blobs.read(digestOf(other)))).toEqual(summary(other));
    expect(await storage.meta.get('k')).toBe('v');
    expect(await filesUnder(join(root, 'tmp'))).toEqual([]);
  });

  describe('metadata files', () => {
    it('keep every key under meta/, with short names, whatever the key says', async () => {
      const meta = fsMetadataStore({ path: root });
      const keys = ['../../outside', '/etc/passwd', 'a/../../../b', `${'é'.repeat(200)}/${'Z'.repeat(400)}`, 'C:\\win'];
      for (const key of keys) await meta.set(key, key);
      const files = await filesUnder(root);
      expect(files).toHaveLength(keys.length);
      for (const file of files) {
        expect(file.startsWith('meta/')).toBe(true);
        for (const part of file.split('/')) expect(Buffer.byteLength(part)).toBeLessThanOrEqual(255);
      }
      for (const key of keys) expect(await meta.get(key)).toBe(key);
    });

    it('read a torn or foreign record as absent and skip it in list()', async () => {
      const meta = fsMetadataStore({ path: root });
      await meta.set('tag/a:1', 'one');
      await meta.set('tag/a:2', 'two');
      const [first, second] = await filesUnder(join(root, 'meta'));
      await writeFile(join(root, 'meta', first!), '{"key":"tag/a:1","val');
      await writeFile(join(root, 'meta', second!), '["not", "a record"]');
      expect(await meta.get('tag/a:1')).toBeUndefined();
      expect(await meta.get('tag/a:2')).toBeUndefined();
      expect(await collect(meta.list('tag/'))).toEqual([]);
      await meta.set('tag/a:1', 'again');
      expect(await meta.get('tag/a:1')).toBe('again');
    });

    it('replace a record by rename, leaving no temporary file', async () => {
      const meta = fsMetadataStore({ path: root });
      await meta.set('tag/a:1', { v: 1 });
      await meta.set('tag/a:1', { v: 2 });
      expect(await filesUnder(join(root, 'tmp'))).toEqual([]);
      expect(await filesUnder(join(root, 'meta'))).toHaveLength(1);
    });
  });
});
