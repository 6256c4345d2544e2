/**
 * The MetadataStore contract as tests, for every adapter to run with one line:
 *
 *   metadataStoreConformance('fs', async () => ({ store: fsMetadataStore({ path }), cleanup: () => rm(path) }));
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { MetadataStore } from '../../src/storage.js';
import { collect, harnessPerTest } from './helpers.js';

export interface MetadataStoreHarness {
  /** A fresh, empty store. */
  store: MetadataStore;
  /** Removes whatever the store wrote; runs after `store.close()`. */
  cleanup(): Promise<void>;
}

/** Code-unit order, as a plain `sort()` would, but for entries. */
const byKey = ([a]: [string, unknown], [b]: [string, unknown]) => (a < b ? -1 : a > b ? 1 : 0);

const manifest = `manifest/sha256:${'ab'.repeat(32)}`;

/** Keys shaped like the ones the mirror writes, and the ones that break naive key-to-name mappings. */
const AWKWARD_KEYS = [
  'tag/docker.io/library/alpine:3.20',
  manifest,
  'tag/ghcr.io/owner/repo@sha256:0',
  'tag/docker.io/library/alpine:Latest',
  'tag/docker.io/library/alpine:latest',
  'unicode/ünïcødé/日本語/🐳',
  'spaces and %41 percent/+plus~tilde*star',
  'dots/../../../escape',
  'dots/./.',
  'slashes//double/',
  '/leading',
  '',
  'nested/a',
  'nested/a/b',
  'nested/ab',
  `long/${'x'.repeat(300)}:${'T'.repeat(128)}`,
  `long/${'x'.repeat(300)}:${'t'.repeat(128)}`,
];

export function metadataStoreConformance(name: string, factory: () => Promise<MetadataStoreHarness>): void {
  describe(`MetadataStore conformance: ${name}`, () => {
    const current = harnessPerTest(factory);
    let store: MetadataStore;
    beforeEach(() => {
      store = current().store;
    });

    async function listed(prefix: string): Promise<Array<[string, unknown]>> {
      return (await collect(store.list(prefix))).sort(byKey);
    }

    it('answers undefined and false for an absent key, and lists nothing', async () => {
      expect(await store.get('tag/docker.io/library/alpine:3.20')).toBeUndefined();
      expect(await store.delete('tag/docker.io/library/alpine:3.20')).toBe(false);
      expect(await listed('')).toEqual([]);
      expect(await listed('tag/')).toEqual([]);
    });

    it.each([
      ['an object', { digest: `sha256:${'cd'.repeat(32)}`, mediaType: 'application/vnd.oci.image.index.v1+json', size: 1234 }],
      ['nested arrays and objects', { a: [1, 'two', { three: [null, true, false] }], b: {} }],
      ['a string', 'sha256:abc'],
      ['a number', 42.5],
      ['zero', 0],
      ['false', false],
      ['null', null],
      ['an empty string', ''],
      ['an array', [1, 2, 3]],
      ['unicode text', 'ünïcødé 日本語 🐳 "quoted" \\ back\nline'],
    ])('round-trips %s as JSON', async (_label, value) => {
      await store.set(manifest, value);
      expect(await store.get(manifest)).toEqual(value);
    });

    it('keeps every awkward key apart and reads each back', async () => {
      for (const [i, key] of AWKWARD_KEYS.entries()) await store.set(key, { i, key });
      for (const [i, key] of AWKWARD_KEYS.entries()) expect(await store.get(key), key).toEqual({ i, key });
      expect(await listed('')).toEqual(
        AWKWARD_KEYS.map((key, i): [string, unknown] => [key, { i, key }]).sort(byKey),
      );
    });

    it('does not confuse keys that differ only in case', async () => {
      await store.set('tag/r:Latest', 'upper');
      await store.set('tag/r:latest', 'lower');
      expect(await store.get('tag/r:Latest')).toBe('upper');
      expect(await store.get('tag/r:latest')).toBe('lower');
      expect(await store.get('tag/r:LATEST')).toBeUndefined();
    });

    it('overwrites a value', async () => {
      await store.set(manifest, { v: 1 });
      await store.set(manifest, { v: 2, more: 'fields' });
      expect(await store.get(manifest)).toEqual({ v: 2, more: 'fields' });
      expect(await listed('manifest/')).toEqual([[manifest, { v: 2, more: 'fields' }]]);
    });

    it('deletes, answering true then false, without touching keys below or beside', async () => {
      await store.set('nested/a', 1);
      await store.set('nested/a/b', 2);
      await store.set('nested/ab', 3);
      expect(await store.delete('nested/a')).toBe(true);
      expect(await store.delete('nested/a')).toBe(false);
      expect(await store.get('nested/a')).toBeUndefined();
      expect(await listed('nested/')).toEqual([
        ['nested/a/b', 2],
        ['nested/ab', 3],
      ]);
      await store.set('nested/a', 4);
      expect(await store.get('nested/a')).toBe(4);
    });

    it('lists exactly the keys that start with a prefix, at or between separators', async () => {
      const keys = [
        'tag/docker.io/library/alpine:3.20',
        'tag/docker.io/library/alpine:3.21',
        'tag/docker.io/library/alpine-extra:1',
        'tag/docker.io/library/alpinelinux/x:1',
        'tag/docker.io/library/busybox:1',
        'tag/ghcr.io/library/alpine:3.20',
        'tags/docker.io/library/alpine:3.20',
        manifest,
      ];
      for (const key of keys) await store.set(key, key.length);
      const expectKeys = async (prefix: string, expected: string[]) =>
        expect((await listed(prefix)).map(([k]) => k), prefix).toEqual([...expected].sort());

      await expectKeys('tag/docker.io/library/alpine:', keys.slice(0, 2));
      await expectKeys('tag/docker.io/library/alpine', keys.slice(0, 4));
      await expectKeys('tag/docker.io/library/', keys.slice(0, 5));
      await expectKeys('tag/docker.io/', keys.slice(0, 5));
      await expectKeys('tag/', keys.slice(0, 6));
      await expectKeys('tag', keys.slice(0, 7));
      await expectKeys('manifest/sha256:', [manifest]);
      await expectKeys('', keys);
      await expectKeys('tag/docker.io/library/alpine:3.20', [keys[0]!]);
      await expectKeys('tag/docker.io/library/alpine:3.2', keys.slice(0, 2));
      await expectKeys('tag/quay.io/', []);
      await expectKeys('nothing', []);
      expect(await listed('tag/docker.io/library/alpine:3.2')).toEqual([
        [keys[0], keys[0]!.length],
        [keys[1], keys[1]!.length],
      ]);
    });

    it('lists prefixes of unicode and escaped keys', async () => {
      for (const key of AWKWARD_KEYS) await store.set(key, 1);
      expect((await listed('unicode/ünï')).map(([k]) => k)).toEqual(['unicode/ünïcødé/日本語/🐳']);
      expect((await listed('long/xxx')).map(([k]) => k)).toEqual(AWKWARD_KEYS.filter((k) => k.startsWith('long/')).sort());
      const long = AWKWARD_KEYS.filter((k) => k.startsWith('long/'));
      expect((await listed(long[0]!.slice(0, -10))).map(([k]) => k)).toEqual([long[0]]);
      expect((await listed('dots/..')).map(([k]) => k)).toEqual(['dots/../../../escape']);
      expect((await listed('slashes//')).map(([k]) => k)).toEqual(['slashes//double/']);
    });

    it('ends concurrent writes of one key with one of the values', async () => {
      await Promise.all(Array.from({ length: 10 }, (_, i) => store.set(manifest, { i })));
      expect([...Array(10).keys()].map((i) => ({ i }))).toContainEqual(await store.get(manifest));
      expect(await listed('manifest/')).toHaveLength(1);
    });

    it('rejects a value JSON cannot hold and keeps the old one', async () => {
      await store.set(manifest, 'old');
      await expect(store.set(manifest, { n: 1n })).rejects.toThrow();
      expect(await store.get(manifest)).toBe('old');
    });
  });
}
