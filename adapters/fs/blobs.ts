/**
 * Blobs as plain files: `blobs/<alg>/<first 2 hex>/<hex>`, written to `tmp/` first and
 * renamed into place only once verified, so a reader never sees a partial blob and a
 * killed process leaves its debris in `tmp/` alone.
 */
import { createWriteStream, mkdirSync, type Dirent } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, addAbortSignal } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream } from '../../src/digest.js';
import { OciError } from '../../src/errors.js';
import { DigestAlgorithms, isValidDigest, parseDigest } from '../../src/reference.js';
import type { BlobInfo, BlobPutOptions, BlobReadOptions, BlobStore, SpoolCapability } from '../../src/storage.js';
import { release } from '../release.js';
import { FileBody } from './file-body.js';
import { TMP_DIR, commit, entries, isNotFound, tempPath, unlinkIfPresent } from './files.js';

export interface FsBlobStoreOptions {
  /** The store root; `blobs/` and `tmp/` live under it. */
  path: string;
  /** Flush every blob to disk before it becomes visible (default true); off only where a lost blob is simply fetched again. */
  fsync?: boolean;
  /**
   * `recover()` removes only files in `tmp/` not written to for at least this long, in ms
   * (default 0: all of `tmp/`), so that it may run while other processes fill into the store.
   */
  recoverOlderThan?: number;
}

/** The fs store always has both optional members; saying so spares callers a check. */
export type FsBlobStore = BlobStore & { spool: SpoolCapability; recover(): Promise<void> };

/** Where one store keeps its files. */
interface Layout {
  root: string;
  blobsDir: string;
  tmpDir: string;
  spoolDir: string;
  fsync: boolean;
}

export function fsBlobStore({ path: root, fsync = true, recoverOlderThan = 0 }: FsBlobStoreOptions): FsBlobStore {
  const tmpDir = join(root, TMP_DIR);
  const layout: Layout = { root, blobsDir: join(root, 'blobs'), tmpDir, spoolDir: join(tmpDir, 'spool'), fsync };
  return {
    // async, so that an invalid digest rejects rather than throws.
    stat: async (digest) => statFile(blobPath(layout, digest)),
    read: (digest, options) => readBlob(layout, digest, options),
    put: (digest, source, options) => putBlob(layout, digest, source, options),
    delete: async (digest) => unlinkIfPresent(blobPath(layout, digest)),
    list: () => listBlobs(layout),
    recover: () => (recoverOlderThan > 0 ? removeStale(layout, recoverOlderThan) : emptyTmp(layout)),
    spool: spoolOf(layout),
  };
}

// parseDigest is the traversal guard: only `[a-z0-9]+:[a-f0-9]{64|128}` reaches a path.
function blobPath({ blobsDir }: Layout, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return join(blobsDir, algorithm, hex.slice(0, 2), hex);
}

async function statFile(file: string): Promise<BlobInfo | undefined> {
  try {
    return { size: (await stat(file)).size };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function readBlob(layout: Layout, digest: string, options: BlobReadOptions = {}): Promise<Readable | undefined> {
  const file = blobPath(layout, digest);
  options.signal?.throwIfAborted();
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    // Opening first, rather than createReadStream(path), turns a missing blob into `undefined` instead of a late 'error'.
    const end = options.end ?? (await fh.stat()).size - 1;
    const stream = new FileBody(fh, options.start ?? 0, end);
    return options.signal ? addAbortSignal(options.signal, stream) : stream;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

async function putBlob(
  layout: Layout,
  digest: string,
  source: Readable | AsyncIterable<Uint8Array>,
  { signal, size }: BlobPutOptions = {},
): Promise<BlobInfo> {
  let target, tmp;
  try {
    target = blobPath(layout, digest);
    tmp = await tempPath(layout.root);
    signal?.throwIfAborted();
  } catch (err) {
    release(source);
    throw err;
  }
  const verify = verifyingStream(digest, size);
  const out = createWriteStream(tmp, { flags: 'wx' });
  // pipeline's own `signal` waits for an async-iterable source to yield again, which a stalled
  // upstream never does; destroying the sink ends the pipeline at once, rejecting with the reason.
  const onAbort = () => out.destroy(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    try {
      await pipeline(source, verify, out);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // pipeline can settle on an early error before the file is even open; removing it before
      // the stream has closed would let the pending open create it again, for good.
      if (!out.closed) await new Promise<void>((resolve) => out.destroy().once('close', () => resolve()));
    }
    signal?.throwIfAborted();
    await commit(tmp, target, layout.fsync);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { size: verify.verifier.size };
}

async function* listBlobs({ blobsDir }: Layout): AsyncGenerator<{ digest: string; size: number }> {
  for (const algorithm of Object.keys(DigestAlgorithms)) {
    for (const fanout of await entries(join(blobsDir, algorithm))) {
      if (!fanout.isDirectory()) continue;
      for (const file of await entries(join(blobsDir, algorithm, fanout.name))) {
        const digest = `${algorithm}:${file.name}`;
        // Skip whatever is not a blob we could have written (an editor's backup, a stray copy).
        if (!file.isFile() || !file.name.startsWith(fanout.name) || !isValidDigest(digest)) continue;
        const info = await statFile(join(blobsDir, algorithm, fanout.name, file.name));
        if (info) yield { digest, size: info.size };
      }
    }
  }
}

// Only at start-up: an in-flight put's temporary file would go too.
async function emptyTmp({ tmpDir }: Layout): Promise<void> {
  for (const entry of await entries(tmpDir)) {
    await rm(join(tmpDir, entry.name), { recursive: true, force: true });
  }
}

/**
 * The files in tmp/ last written more than `olderThan` ms ago. A write in flight (a put, a
 * fill's spool) touches its file as its bytes arrive; the caller picks an age that none of
 * them can reach. Directories stay: the spool directory is in use.
 */
async function removeStale({ tmpDir }: Layout, olderThan: number): Promise<void> {
  const cutoff = Date.now() - olderThan;
  let found: Dirent[];
  try {
    found = await readdir(tmpDir, { recursive: true, withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  for (const entry of found) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    // Gone meanwhile (committed by rename, or removed by its writer): nothing to do.
    const written = await stat(file).then((s) => s.mtimeMs, () => undefined);
    if (written !== undefined && written < cutoff) await rm(file, { force: true });
  }
}

function spoolOf(layout: Layout): SpoolCapability {
  return {
    get dir() {
      // On every access (a cheap EEXIST), so that recover() emptying tmp/ cannot break a later fill.
      mkdirSync(layout.spoolDir, { recursive: true });
      return layout.spoolDir;
    },

    async adopt(digest, file, size) {
      const target = blobPath(layout, digest);
      const existing = await statFile(target);
      if (existing) {
        await rm(file, { force: true });
        return existing;
      }
      // The caller verified the content; a length that disagrees means a bug upstream of us, not a blob.
      const actual = (await stat(file)).size;
      if (actual !== size) throw new OciError('SIZE_INVALID', `spool file has ${actual} bytes, expected ${size}`);
      await commit(file, target, layout.fsync);
      return { size };
    },
  };
}


