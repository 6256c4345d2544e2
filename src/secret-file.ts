/**
 * A file the config names for a secret (a password, a token, an htpasswd file), read at start-up
 * and read again once it changed, so that a rotated secret takes effect without a restart.
 *
 * Checked on use, not watched: `current()` stats the path at most once every CHECK_EVERY_MS and
 * reads the file only when its inode, size, mtime or ctime moved, so the requests in between cost
 * a clock read and no syscall. A stat of the path follows symlinks, so Kubernetes' atomic swap of
 * a Secret volume's `..data` link is seen like an in-place rewrite (vault-agent, certbot), where
 * `fs.watch` on the file keeps watching the old, unlinked inode; and there is nothing to close.
 * The price is up to CHECK_EVERY_MS before a change is seen.
 *
 * A file that is then missing, unreadable, empty or no good (a bad htpasswd line) is most likely
 * half-way through being rewritten: the last good value stays, and `onReload` hears of it once
 * per change of the file, never with its content. A half-written file that parses is taken, and
 * replaced at the next check, since the rest of the write changes its size and mtime.
 */
import { readFileSync, statSync } from 'node:fs';

export const CHECK_EVERY_MS = 1000;

/** What `onReload` hears: a new value taken (no `error`), or a change that was not usable. */
export interface SecretReload {
  /** The config key, e.g. `upstreams[docker.io].password`. */
  key: string;
  path: string;
  /** Why the last good value stays: an errno code or a parse error (which never quotes the file). */
  error?: string;
}

export interface FileSecretOptions<T> {
  path: string;
  /** The config key, for messages. */
  key: string;
  /** The file's text to the value; throws on text that is no good. */
  parse: (text: string) => T;
  onReload?: (reload: SecretReload) => void;
  /** Milliseconds since the epoch; Date.now by default (tests pass a fake clock). */
  now?: () => number;
}

export class FileSecret<T> {
  private value: T;
  private stamp: string;
  private checkedAt: number;
  private readonly now: () => number;

  /** Reads the file now: at start-up, a file that cannot be read or parsed throws (the caller names the key). */
  constructor(private readonly options: FileSecretOptions<T>) {
    this.now = options.now ?? Date.now;
    this.stamp = stampOf(options.path);
    this.value = options.parse(readFileSync(options.path, 'utf8'));
    this.checkedAt = this.now();
  }

  /** The value, read again first when the last check is CHECK_EVERY_MS old and the file changed since. */
  current(): T {
    const now = this.now();
    // A clock that went back counts as due: waiting for it to catch up could take hours.
    if (now >= this.checkedAt && now - this.checkedAt < CHECK_EVERY_MS) return this.value;
    this.checkedAt = now;
    this.refresh();
    return this.value;
  }

  private refresh(): void {
    const { path, key, parse, onReload } = this.options;
    let stamp: string;
    try {
      stamp = stampOf(path);
    } catch (err) {
      stamp = `unreadable:${errorOf(err)}`;
    }
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    let next: T;
    try {
      if (stamp.startsWith('unreadable:')) throw new Error(stamp.slice('unreadable:'.length));
      const text = readFileSync(path, 'utf8');
      // A writer that truncates and then writes leaves an empty file for a moment.
      if (text.trim() === '') throw new Error('empty');
      next = parse(text);
    } catch (err) {
      onReload?.({ key, path, error: errorOf(err) });
      return;
    }
    this.value = next;
    onReload?.({ key, path });
  }
}

/** What changes when the file does: a symlink swap changes the inode, a rewrite the times and size. */
function stampOf(path: string): string {
  const s = statSync(path);
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

function errorOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
