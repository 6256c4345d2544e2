/**
 * Stores whose adapter module is loaded on first use. The S3 SDK and the Redis client cost
 * about 40 MB of memory between them; a mirror on the filesystem should not carry them.
 */
import type { Readable } from 'node:stream';
import type { BlobStore, MetadataStore } from './storage.js';

function once<T>(load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () => (loading ??= load());
}

export function deferredBlobStore(load: () => Promise<BlobStore>): BlobStore {
  const store = once(load);
  return {
    stat: async (digest) => (await store()).stat(digest),
    read: async (digest, options) => (await store()).read(digest, options),
    async put(digest, source, options) {
      let target: BlobStore;
      try {
        target = await store();
      } catch (err) {
        // The contract: a put that fails still releases its source (an upstream connection).
        (source as Partial<Readable>).destroy?.();
        throw err;
      }
      return target.put(digest, source, options);
    },
    delete: async (digest) => (await store()).delete(digest),
    async *list() {
      yield* (await store()).list();
    },
    recover: async () => (await store()).recover?.(),
    presign: async (digest, options) => (await store()).presign?.(digest, options),
    close: async () => (await store()).close?.(),
  };
}

export function deferredMetadataStore(load: () => Promise<MetadataStore>): MetadataStore {
  const store = once(load);
  return {
    get: async <T>(key: string) => (await store()).get<T>(key),
    set: async (key, value) => (await store()).set(key, value),
    delete: async (key) => (await store()).delete(key),
    async *list<T>(prefix: string): AsyncIterable<[string, T]> {
      yield* (await store()).list<T>(prefix);
    },
    recover: async () => (await store()).recover?.(),
    close: async () => (await store()).close?.(),
  };
}
