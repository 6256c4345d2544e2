/**
 * Metadata keys are arbitrary strings; file names are not. Each `/`-separated segment of a key
 * becomes one path component, so `list('tag/docker.io/library/')` reads one directory instead
 * of the whole store. Segments are escaped to `[a-z0-9._-]` plus `%XX`, which keeps them
 * distinct on case-insensitive filesystems (tags are case-sensitive) and rules out `.`, `..`
 * and separators. Directories end in `+` and records in `.json`, so `a/b` and `a/b/c` can
 * both exist. The key is also stored inside each record; names only need to be unique.
 */
import { digestOf } from '../../src/digest.js';

const SAFE_BYTE = /^[a-z0-9._-]$/;
/** Far below the usual 255-byte NAME_MAX, leaving room for the suffix. */
const MAX_NAME = 200;
/** Marks a segment too long to spell out, named by its hash instead; `~` is never produced by escaping. */
const HASHED = '~';

export const DIR_SUFFIX = '+';
export const RECORD_SUFFIX = '.json';

function segmentName(segment: string): string {
  let name = '';
  for (const byte of Buffer.from(segment, 'utf8')) {
    const char = String.fromCharCode(byte);
    name += SAFE_BYTE.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return name.length <= MAX_NAME ? name : HASHED + digestOf(segment).slice('sha256:'.length);
}

/** The path components, under the metadata root, of the record for `key`. */
export function recordPath(key: string): string[] {
  const segments = key.split('/');
  const last = segments.pop() ?? '';
  return [...directoryPath(segments), segmentName(last) + RECORD_SUFFIX];
}

/** The path components of the directory that holds every key starting with `segments.join('/') + '/'`. */
export function directoryPath(segments: string[]): string[] {
  return segments.map((segment) => segmentName(segment) + DIR_SUFFIX);
}

/**
 * The key segment a directory entry stands for; `null` for a hashed one, which can only be
 * told by reading it; `undefined` for an entry we did not write.
 */
export function entrySegment(entry: string, suffix: string): string | null | undefined {
  if (!entry.endsWith(suffix)) return undefined;
  const name = entry.slice(0, -suffix.length);
  if (name.startsWith(HASHED)) return null;
  try {
    return decodeURIComponent(name);
  } catch {
    return undefined;
  }
}
