/**
 * Metadata in any Keyv store: each record is its value as JSON text under `meta:<key>`.
 * Storing text we serialised ourselves, rather than the value, keeps the contract's JSON
 * round-trip whatever serializer the Keyv was built with.
 */
import type { Keyv } from 'keyv';
import type { MetadataStore } from '../../src/storage.js';
import { isKeyv, openKeyvs, type KeyvConnectOptions } from './connect.js';
import { KeyvTable, parseJson } from './table.js';

export type KeyvMetadataStore = MetadataStore & { close(): Promise<void> };

/**
 * `target` is a Keyv (yours: it is not disconnected by `close()`; build it with
 * `throwOnErrors: true`, or store errors read as misses) or where to connect.
 */
export function keyvMetadataStore(target: Keyv | KeyvConnectOptions): KeyvMetadataStore {
  if (isKeyv(target)) return metadataOver(target, async () => {});
  const { keyvs, close } = openKeyvs(target, ['meta']);
  return metadataOver(keyvs.meta, close);
}

export function metadataOver(keyv: Keyv, close: () => Promise<void>): KeyvMetadataStore {
  const table = new KeyvTable(keyv, 'meta:', { listable: true });
  return {
    async get<T>(key: string) {
      return parseJson(await table.get(key)) as T | undefined;
    },

    async set(key, value) {
      // Serialise first: a value JSON cannot hold fails here, before anything is written.
      const json = JSON.stringify(value);
      if (json === undefined) throw new TypeError(`cannot store ${typeof value} as JSON`);
      await table.set(key, json);
    },

    delete: (key) => table.delete(key),

    async *list<T>(prefix: string): AsyncGenerator<[string, T]> {
      for await (const [key, json] of table.entries(prefix)) {
        const value = parseJson(json);
        if (value !== undefined) yield [key, value as T];
      }
    },

    close,
  };
}

