/**
 * Metadata as one small JSON file per key under `meta/` (see keys.ts for the naming).
 * A record is written to `tmp/` and renamed over the old one, so a crash leaves the old
 * record or the new one; anything unreadable counts as absent, as a cache miss would.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MetadataStore } from '../../src/storage.js';
import { commit, entries, isNotFound, tempPath, unlinkIfPresent } from './files.js';
import { DIR_SUFFIX, RECORD_SUFFIX, directoryPath, entrySegment, recordPath } from './keys.js';

export interface FsMetadataStoreOptions {
  /** The store root, shared with fsBlobStore if you like; records live under `meta/`. */
  path: string;
  /** Flush each record before it replaces the old one (default true). */
  fsync?: boolean;
}

interface StoredRecord {
  key: string;
  value: unknown;
}

export function fsMetadataStore({ path: root, fsync = true }: FsMetadataStoreOptions): MetadataStore {
  const metaDir = join(root, 'meta');
  const fileFor = (key: string) => join(metaDir, ...recordPath(key));

  /** Every record at or below `dir` whose key segment at this level starts with `partial`. */
  async function* records(dir: string, partial = ''): AsyncGenerator<StoredRecord> {
    for (const entry of await entries(dir)) {
      const isDir = entry.isDirectory();
      if (!isDir && !entry.isFile()) continue;
      const segment = entrySegment(entry.name, isDir ? DIR_SUFFIX : RECORD_SUFFIX);
      // A hashed name (null) cannot be judged by its name; the caller checks the stored key.
      if (segment === undefined || (segment !== null && !segment.startsWith(partial))) continue;
      if (isDir) {
        yield* records(join(dir, entry.name));
      } else {
        const record = await readRecord(join(dir, entry.name));
        if (record) yield record;
      }
    }
  }

  return {
    async get<T>(key: string) {
      const record = await readRecord(fileFor(key));
      return record?.key === key ? (record.value as T) : undefined;
    },

    async set(key, value) {
      // Serialise first: a value JSON cannot hold fails here, before any file is touched.
      const json = JSON.stringify({ key, value } satisfies StoredRecord);
      const target = fileFor(key);
      const tmp = await tempPath(root);
      try {
        await writeFile(tmp, json, { flag: 'wx' });
        await commit(tmp, target, fsync);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
    },

    // Empty directories stay: removing them would race a concurrent set() into the same one.
    delete: async (key) => unlinkIfPresent(fileFor(key)),

    async *list<T>(prefix: string): AsyncGenerator<[string, T]> {
      const segments = prefix.split('/');
      const partial = segments.pop() ?? '';
      for await (const record of records(join(metaDir, ...directoryPath(segments)), partial)) {
        if (record.key.startsWith(prefix)) yield [record.key, record.value as T];
      }
    },
  };
}

async function readRecord(file: string): Promise<StoredRecord | undefined> {
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
    throw err;
  }
  try {
    const record: unknown = JSON.parse(text);
    if (typeof record === 'object' && record !== null && typeof (record as StoredRecord).key === 'string') {
      return record as StoredRecord;
    }
  } catch {
    // A hand-edited or foreign file: treated like a miss, the record is simply written again.
  }
  return undefined;
}
