import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fsMetadataStore } from '../../adapters/fs/index.js';
import { OciError } from '../errors.js';
import type { MetadataStore } from '../storage.js';
import { forgetLinks, LINK_PREFIX, linkKey, Links } from './links.js';

const D = `sha256:${'a'.repeat(64)}`;
const route = (upstream: string, repository: string) => ({ upstream: { name: upstream }, repository });

describe('Links', () => {
  let dir: string;
  let meta: MetadataStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'links-'));
    meta = fsMetadataStore({ path: dir, fsync: false });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('links a route to a digest, in the store, for another instance too', async () => {
    await new Links(meta).add(D, route('open.test', 'team/app'));
    const other = new Links(meta);
    expect(await other.has(D, route('open.test', 'team/app'))).toBe(true);
    expect(await other.has(D, route('open.test', 'team/other'))).toBe(false);
    expect(await other.has(D, route('priv.test', 'team/app'))).toBe(false);
    expect(await meta.get(linkKey(D, route('open.test', 'team/app')))).toMatchObject({ at: expect.any(Number) });
  });

  it('holds a link in memory while its record is written, and forgets it when the write fails', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let fail = false;
    const slow: MetadataStore = {
      ...meta,
      get: (key) => meta.get(key),
      set: async (key, value) => {
        await gate;
        if (fail) throw new Error('disk full');
        return meta.set(key, value);
      },
    };
    const links = new Links(slow);
    const writing = links.add(D, route('u', 'r'));
    // The upstream has just said so: no second question while the record is on its way.
    expect(await links.has(D, route('u', 'r'))).toBe(true);
    fail = true;
    release();
    await expect(writing).rejects.toThrow('disk full');
    expect(await links.has(D, route('u', 'r'))).toBe(false);
  });

  it('asks once for concurrent confirmations, and links only on a yes', async () => {
    const links = new Links(meta);
    let asked = 0;
    const yes = async () => {
      asked++;
      await new Promise((r) => setTimeout(r, 10));
    };
    await Promise.all(Array.from({ length: 10 }, () => links.confirm(D, route('u', 'r'), yes)));
    expect(asked).toBe(1);
    await links.confirm(D, route('u', 'r'), yes);
    expect(asked).toBe(1);

    const no = () => Promise.reject(new OciError('BLOB_UNKNOWN', 'not here'));
    await expect(links.confirm(D, route('u', 'other'), no)).rejects.toMatchObject({ code: 'BLOB_UNKNOWN' });
    expect(await links.has(D, route('u', 'other'))).toBe(false);
    // A refusal is not remembered: the next request asks again.
    await expect(links.confirm(D, route('u', 'other'), no)).rejects.toMatchObject({ code: 'BLOB_UNKNOWN' });
  });

  it('forgets every link of a digest, in memory and in the store, and no other digest’s', async () => {
    const links = new Links(meta);
    const E = `sha256:${'b'.repeat(64)}`;
    await links.add(D, route('u', 'a'));
    await links.add(D, route('v', 'deep/name/here'));
    await links.add(E, route('u', 'a'));
    expect(await links.forget(D)).toBe(2);
    expect(await links.has(D, route('u', 'a'))).toBe(false);
    expect(await links.has(D, route('v', 'deep/name/here'))).toBe(false);
    expect(await links.has(E, route('u', 'a'))).toBe(true);
    expect(await forgetLinks(meta, D)).toBe(0);
    const left: string[] = [];
    for await (const [key] of meta.list(LINK_PREFIX)) left.push(key);
    expect(left).toEqual([linkKey(E, route('u', 'a'))]);
  });

  it('keeps a bounded memory, oldest digest first, and what it dropped is read from the store again', async () => {
    const links = new Links(meta, { remember: 2 });
    const [a, b, c] = ['a', 'b', 'c'].map((x) => `sha256:${x.repeat(64)}`) as [string, string, string];
    for (const d of [a, b, c]) await links.add(d, route('u', 'r'));
    await meta.delete(linkKey(a, route('u', 'r')));
    // a was dropped from memory, so the store's word counts; c is still remembered.
    expect(await links.has(a, route('u', 'r'))).toBe(false);
    await meta.delete(linkKey(c, route('u', 'r')));
    expect(await links.has(c, route('u', 'r'))).toBe(true);
    // What eviction removed is forgotten at once.
    links.removed(c);
    expect(await links.has(c, route('u', 'r'))).toBe(false);
  });
});
