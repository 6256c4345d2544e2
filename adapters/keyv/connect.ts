/**
 * Builds the Keyvs a store needs from a URL: `memory` (a Map each) or Redis (`redis://`,
 * `rediss://`) through @keyv/redis, one connection shared by every namespace. Each Keyv gets
 * its own namespace, `<namespace>-<name>`, so that listing metadata never reads blob chunks.
 */
import KeyvRedis, { createClient } from '@keyv/redis';
import { Keyv } from 'keyv';
import { DEFAULT_NAMESPACE, isKeyvUrl, type KeyvConnectOptions } from './options.js';

export { DEFAULT_NAMESPACE, isKeyvUrl, type KeyvConnectOptions } from './options.js';

export interface OpenedKeyvs<N extends string> {
  keyvs: Record<N, Keyv>;
  close(): Promise<void>;
}

const NAMESPACE = /^[A-Za-z0-9._-]+$/;
/** Every Redis command fails after this long instead of waiting (a Redis that went away holds commands in its offline queue). */
const COMMAND_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 5_000;


export function openKeyvs<N extends string>({ url, namespace = DEFAULT_NAMESPACE }: KeyvConnectOptions, names: readonly N[]): OpenedKeyvs<N> {
  // Keyv splits keys at the first `:`, and Redis SCAN patterns treat `*?[]` as wildcards.
  if (!NAMESPACE.test(namespace)) throw new TypeError(`namespace "${namespace}" may only hold letters, digits, ".", "_" and "-"`);
  if (!isKeyvUrl(url)) throw new TypeError('url must be "memory" or a redis:// or rediss:// URL');
  const keyvs = {} as Record<N, Keyv>;
  if (url === 'memory') {
    for (const name of names) keyvs[name] = new Keyv({ store: new Map(), namespace: `${namespace}-${name}`, throwOnErrors: true });
    return { keyvs, close: async () => {} };
  }
  let connected = false;
  const client = createClient({
    url,
    commandOptions: { timeout: COMMAND_TIMEOUT_MS },
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      // A Redis that was never reached fails each operation at once (the next one tries again);
      // one that went away after a connection is reconnected to, with backoff.
      reconnectStrategy: (retries: number, cause: Error) => (connected ? Math.min(100 * 2 ** retries, 2_000) : cause),
    },
  });
  client.on('ready', () => (connected = true));
  // Connection errors reach the caller as failed commands; an 'error' event nobody hears would end the process.
  client.on('error', () => {});
  for (const name of names) {
    const ns = `${namespace}-${name}`;
    // throwOnErrors on both layers: otherwise a failed Redis command reads as a miss, or a write as done.
    const store = new KeyvRedis(client, { namespace: ns, throwOnErrors: true, throwOnConnectError: true, connectionTimeout: CONNECT_TIMEOUT_MS });
    keyvs[name] = new Keyv({ store, namespace: ns, useKeyPrefix: false, throwOnErrors: true });
  }
  return {
    keyvs,
    async close() {
      if (client.isOpen) await client.close();
    },
  };
}

/** A close that does its work on the `count`-th call: for stores that share one connection. */
export function sharedClose(close: () => Promise<void>, count: number): () => Promise<void> {
  let left = count;
  return async () => {
    if (--left === 0) await close();
  };
}

/** A Keyv passed in, told apart from connection options. */
export function isKeyv(value: unknown): value is Keyv {
  return typeof value === 'object' && value !== null && !('url' in value) && typeof (value as Keyv).get === 'function';
}
