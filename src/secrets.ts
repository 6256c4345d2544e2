/**
 * Secrets named in the config: given inline, or better read from a file (a mounted secret)
 * or an environment variable, at start-up. A missing one is a config error naming the key;
 * the value itself is never part of any message. A file may be read again while the mirror
 * runs (`rotatingSecret`), so that rotating it needs no restart.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './config.js';
import { FileSecret, type SecretReload } from './secret-file.js';

/** A secret as given (a value), or how to get it now (from a file that may be rotated). */
export type Secret<T = string> = T | (() => T);

export function currentSecret<T>(secret: Secret<T>): T {
  return typeof secret === 'function' ? (secret as () => T)() : secret;
}

export interface SecretSource {
  value?: string;
  file?: string;
  env?: string;
}

export function readSecret(source: SecretSource, key: string): string | undefined {
  if (source.value !== undefined) return source.value;
  if (source.file !== undefined) return fromFile(source.file, key, () => withoutNewline(readFileSync(source.file!, 'utf8')));
  if (source.env !== undefined) {
    const v = process.env[source.env];
    if (v === undefined || v === '') throw new ConfigError(`${key}Env: environment variable ${source.env} is not set`);
    return v;
  }
  return undefined;
}

/** Like `readSecret`, but a file is read again once it changed (see FileSecret); values and variables stay as read. */
export function rotatingSecret(source: SecretSource, key: string, onReload?: (reload: SecretReload) => void): Secret | undefined {
  if (source.value !== undefined || source.file === undefined) return readSecret(source, key);
  const path = source.file;
  const file = fromFile(path, key, () => new FileSecret({ path, key: `${key}File`, parse: withoutNewline, onReload }));
  return () => file.current();
}

function fromFile<T>(path: string, key: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw new ConfigError(`${key}File: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** One trailing newline is how editors and `echo` write files; it is never part of a secret. */
function withoutNewline(text: string): string {
  return text.replace(/\r?\n$/, '');
}

/**
 * Checks a presented secret against `expected` in constant time. Both sides are hashed first:
 * `timingSafeEqual` needs equal lengths, and checking the lengths before it would tell a
 * caller, by how fast a wrong guess fails, how long the secret is. A rotating secret is
 * hashed again only when its value changed.
 */
export function secretMatcher(expected: Secret): (presented: string) => boolean {
  let known = currentSecret(expected);
  let want = sha256(known);
  return (presented) => {
    const now = currentSecret(expected);
    // Two of our own values compared: nothing of the presented one is timed here.
    if (now !== known) {
      known = now;
      want = sha256(now);
    }
    return timingSafeEqual(sha256(presented), want);
  };
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
