/**
 * The few filesystem moves both fs stores share: a unique temporary file on the same
 * filesystem as the final one, so that committing is one atomic rename, and the syncs
 * that make such a rename survive a power cut.
 */
import { randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Under the store root; everything in it is unfinished and may be removed at start-up. */
export const TMP_DIR = 'tmp';

/** ENOTDIR too: a file where a directory was expected means the entry is not there either. */
export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Resolves false when there was nothing to remove: absence is an answer, not an error. */
export async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** The entries of a directory; none when it does not exist (yet). */
export async function entries(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

export async function tempPath(root: string): Promise<string> {
  const dir = join(root, TMP_DIR);
  // Every time, not once: recover() or an operator may have emptied tmp/ since.
  await mkdir(dir, { recursive: true });
  return join(dir, randomUUID());
}

export async function syncFile(path: string): Promise<void> {
  // r+ rather than r: some platforms refuse to flush a handle opened read-only.
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A renamed file is durable only once its directory entry is; where directories cannot be opened, there is nothing to do. */
export async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}

/** Moves a finished file into place; readers see the old entry or the whole new one, never a part. */
export async function commit(from: string, to: string, fsync: boolean): Promise<void> {
  if (fsync) await syncFile(from);
  await mkdir(dirname(to), { recursive: true });
  await rename(from, to);
  if (fsync) await syncDir(dirname(to));
}
