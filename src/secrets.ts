/**
 * Secrets named in the config: given inline, or better read from a file (a mounted secret)
 * or an environment variable, at start-up. A missing one is a config error naming the key;
 * the value itself is never part of any message.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './config.js';

export interface SecretSource {
  value?: string;
  file?: string;
  env?: string;
}

export function readSecret(source: SecretSource, key: string): string | undefined {
  if (source.value !== undefined) return source.value;
  if (source.file !== undefined) {
    try {
      // One trailing newline is how editors and `echo` write files; it is never part of a secret.
      return readFileSync(source.file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new ConfigError(`${key}File: cannot read ${source.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  if (source.env !== undefined) {
    const v = process.env[source.env];
    if (v === undefined || v === '') throw new ConfigError(`${key}Env: environment variable ${source.env} is not set`);
    return v;
  }
  return undefined;
}

/**
 * Checks a presented secret against `expected` in constant time. Both sides are hashed first:
 * `timingSafeEqual` needs equal lengths, and checking the lengths before it would tell a
 * caller, by how fast a wrong guess fails, how long the secret is.
 */
export function secretMatcher(expected: string): (presented: string) => boolean {
  const want = sha256(expected);
  return (presented) => timingSafeEqual(sha256(presented), want);
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
