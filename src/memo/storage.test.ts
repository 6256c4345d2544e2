import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fsStorage } from '../../adapters/fs/index.js';
import { digestOf } from '../digest.js';
import { readCapped } from '../http.js';
import { tagRecordExpiry } from '../manifests/keys.js';
import type { Storage } from '../storage.js';
import { memoStorage, SMALL_BLOB_BYTES } from './storage.js';

const TTL = 60_000;
let dir: string;
let store: Storage;
let clock: number;
const memo = (budget = 1024 * 1024) => memoStorage(store, { budget, maxAge: TTL, expiresAt: tagRecordExpiry(TTL), now: () => clock });
const blobFile = (digest: string) => join(dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
const readAll = async (s: Storage, digest: string) => {
  const stream = await s.blobs.read(digest);
  return stream && readCapped(stream, 10 * 1024 * 1024);
};
const put = async (s: Storage, bytes: Buffer) => {
  const digest = digestOf(bytes, 'sha256');
  await s.blobs.put(digest, Readable.from([bytes]), { size: bytes.length });
  return digest;
};

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-memo-'));
  store = fsStorage({ path: dir, fsync: false });
  clock = 1_000_000;
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('memoStorage', () => {
  it('answers a record it read from memory, and forgets it when it is deleted through it', async () => {
    const m = memo();
    await store.meta.set('manifest/sha256:a', { mediaType: 'x', size: 1 });
    expect(await m.meta.get('manifest/sha256:a')).toEqual({ mediaType: 'x', size: 1 });
    await store.meta.delete('manifest/sha256:a');
    // Behind its back: still held, for at most maxAge.
    expect(await m.meta.get('manifest/sha256:a')).toEqual({ mediaType: 'x', size: 1 });
    clock += TTL;
    expect(await m.meta.get('manifest/sha256:a')).toBeUndefined();

    await m.meta.set('manifest/sha256:b', { mediaType: 'y', size: 2 });
    expect(await m.meta.get('manifest/sha256:b')).toEqual({ mediaType: 'y', size: 2 });
    // Eviction, purge and gc delete through the mirror's storage, which is the memo.
    expect(await m.meta.delete('manifest/sha256:b')).toBe(true);
    expect(await m.meta.get('manifest/sha256:b')).toBeUndefined();
  });

  it('never remembers an absence: a record another replica writes is seen at once', async () => {
    const a = memo();
    const b = memo();
    expect(await a.meta.get('link/sha256:c/up/repo')).toBeUndefined();
    await b.meta.set('link/sha256:c/up/repo', { at: 1 });
    expect(await a.meta.get('link/sha256:c/up/repo')).toEqual({ at: 1 });
  });

  it('trusts a tag record only until its own checkedAt + tagTtl, so a tag moved by another replica shows then', async () => {
    const a = memo();
    const b = memo();
    const key = 'tag/up/repo:latest';
    await b.meta.set(key, { digest: 'sha256:old', mediaType: 'x', size: 1, checkedAt: clock - 10_000 });
    expect(await a.meta.get(key)).toMatchObject({ digest: 'sha256:old' });
    // Replica b revalidates and finds the tag moved.
    await b.meta.set(key, { digest: 'sha256:new', mediaType: 'x', size: 1, checkedAt: clock });
    expect(await b.meta.get(key)).toMatchObject({ digest: 'sha256:new' });
    clock += TTL - 10_001;
    expect(await a.meta.get(key)).toMatchObject({ digest: 'sha256:old' });
    clock += 1;
    expect(await a.meta.get(key)).toMatchObject({ digest: 'sha256:new' });
  });

  it('does not hold a tag record whose TTL has run out: a stale tag is read from the store each time', async () => {
    const a = memo();
    const key = 'tag/up/repo:old';
    await store.meta.set(key, { digest: 'sha256:x', mediaType: 'x', size: 1, checkedAt: clock - TTL });
    expect(await a.meta.get(key)).toMatchObject({ digest: 'sha256:x' });
    await store.meta.delete(key);
    expect(await a.meta.get(key)).toBeUndefined();
  });

  it('holds small blobs whole and answers sizes from memory; a delete through it forgets both', async () => {
    const m = memo();
    const bytes = randomBytes(4096);
    const digest = await put(m, bytes);
    expect(await m.blobs.stat(digest)).toEqual({ size: 4096 });
    expect((await readAll(m, digest))!.equals(bytes)).toBe(true);
    expect(m.blobs.held!(digest)!.equals(bytes)).toBe(true);
    const range = await m.blobs.read(digest, { start: 10, end: 19 });
    expect((await readCapped(range!, 100)).equals(bytes.subarray(10, 20))).toBe(true);
    expect(await m.blobs.delete(digest)).toBe(true);
    expect(m.blobs.held!(digest)).toBeUndefined();
    expect(await m.blobs.stat(digest)).toBeUndefined();
    expect(await m.blobs.read(digest)).toBeUndefined();
  });

  it('answers "absent" for a blob removed behind its back once the read fails, and asks the store again after', async () => {
    const m = memo();
    const bytes = randomBytes(SMALL_BLOB_BYTES + 1);
    const digest = await put(m, bytes);
    expect(await m.blobs.stat(digest)).toEqual({ size: bytes.length });
    // Another replica's eviction.
    await unlink(blobFile(digest));
    expect(await m.blobs.stat(digest)).toEqual({ size: bytes.length });
    expect(await m.blobs.read(digest)).toBeUndefined();
    expect(await m.blobs.stat(digest)).toBeUndefined();
  });

  it('keeps within its budget, least recently used out first', async () => {
    const m = memo(64 * 1024);
    const digests = [];
    for (let i = 0; i < 12; i++) {
      const digest = await put(m, randomBytes(7 * 1024));
      await readAll(m, digest);
      digests.push(digest);
    }
    const held = digests.filter((d) => m.blobs.held!(d));
    expect(held.length).toBeGreaterThan(0);
    expect(held.length).toBeLessThan(digests.length);
    expect(held).toEqual(digests.slice(digests.length - held.length));
  });

  it('is the store itself with a budget of 0', () => {
    expect(memoStorage(store, { budget: 0, maxAge: TTL })).toBe(store);
  });
});
