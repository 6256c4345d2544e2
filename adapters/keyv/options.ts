/**
 * What a Keyv store is reached by, kept apart from the connection code so that the config
 * can validate it without loading a Redis client.
 */
export interface KeyvConnectOptions {
  /** `memory`, or a Redis URL: `redis://[[user]:password@]host[:port][/db]` or `rediss://…`. */
  url: string;
  /** Prefix of every key written (default `oci-mirror`): letters, digits, `.`, `_` and `-`. */
  namespace?: string;
}

export const DEFAULT_NAMESPACE = 'oci-mirror';

export function isKeyvUrl(url: string): boolean {
  return url === 'memory' || /^rediss?:\/\/[^/]/.test(url);
}
