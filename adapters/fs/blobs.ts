/**
 * Blobs as plain files: `blobs/<alg>/<first 2 hex>/<hex>`, written to `tmp/` first and
 * renamed into place only once verified, so a reader never sees a partial blob and a
 * killed process leaves its debris in `tmp/` alone.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, addAbortSignal } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { verifyingStream } from '../../src/digest.js';
import { OciError } from '../../src/errors.js';
import { DigestAlgorithms, parseDigest } from '../../src/reference.js';
import type { BlobInfo, BlobReadOptions, BlobStore, SpoolCapability } from '../../src/storage.js';
import { TMP_DIR, commit, entries, isNotFound, tempPath, unlinkIfPresent } from './files.js';

export interface FsBlobStoreOptions {
  /** The store root; `blobs/` and `tmp/` live under it. */
  path: string;
  /** Flush every blob to disk before it becomes visible (default true); off only where a lost blob is simply fetched again. */
  fsync?: boolean;
}

/** The fs store always has both optional members; saying so spares callers a check. */
export type FsBlobStore = BlobStore & { spool: SpoolCapability; recover(): Promise<void> };

/** Warm serving is disk to socket; 64 KiB reads (the default) cost a syscall and a stream turn each. */
const READ_CHUNK = 1024 * 1024;

export function fsBlobStore({ path: root, fsync = true }: FsBlobStoreOptions): FsBlobStore {
  const blobsDir = join(root, 'blobs');
  const tmpDir = join(root, TMP_DIR);
  const spoolDir = join(tmpDir, 'spool');

  // parseDigest is the traversal guard: only `[a-z0-9]+:[a-f0-9]{64|128}` reaches a path.
  function blobPath(digest: string): string {
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

  return {
    // async, so that an invalid digest rejects rather than throws.
    stat: async (digest) => statFile(blobPath(digest)),

    async read(digest, options: BlobReadOptions = {}) {
      const file = blobPath(digest);
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
        const stream = fh.createReadStream({ start: options.start, end: options.end, highWaterMark: READ_CHUNK });
        return options.signal ? addAbortSignal(options.signal, stream) : stream;
      } catch (err) {
        await fh.close();
        throw err;
      }
    },

    async put(digest, source, options = {}) {
      const { signal, size } = options;
      let target, tmp;
      try {
        target = blobPath(digest);
        tmp = await tempPath(root);
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
        await commit(tmp, target, fsync);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return { size: verify.verifier.size };
    },

    delete: async (digest) => unlinkIfPresent(blobPath(digest)),

    async *list() {
      for (const algorithm of Object.keys(DigestAlgorithms)) {
        for (const fanout of await entries(join(blobsDir, algorithm))) {
          if (!fanout.isDirectory()) continue;
          for (const file of await entries(join(blobsDir, algorithm, fanout.name))) {
            const digest = `${algorithm}:${file.name}`;
            // Skip whatever is not a blob we could have written (an editor's backup, a stray copy).
            if (!file.isFile() || !file.name.startsWith(fanout.name) || !isDigest(digest)) continue;
            const info = await statFile(join(blobsDir, algorithm, fanout.name, file.name));
            if (info) yield { digest, size: info.size };
          }
        }
      }
    },

    // Only at start-up: an in-flight put's temporary file would go too.
    async recover() {
      for (const entry of await entries(tmpDir)) {
        await rm(join(tmpDir, entry.name), { recursive: true, force: true });
      }
    },

    spool: {
      get dir() {
        // On every access (a cheap EEXIST), so that recover() emptying tmp/ cannot break a later fill.
        mkdirSync(spoolDir, { recursive: true });
        return spoolDir;
      },

      async adopt(digest, file, size) {
        const target = blobPath(digest);
        const existing = await statFile(target);
        if (existing) {
          await rm(file, { force: true });
          return existing;
        }
        // The caller verified the content; a length that disagrees means a bug upstream of us, not a blob.
        const actual = (await stat(file)).size;
        if (actual !== size) throw new OciError('SIZE_INVALID', `spool file has ${actual} bytes, expected ${size}`);
        await commit(file, target, fsync);
        return { size };
      },
    },
  };
}

/**
 * A put that fails before its pipeline starts still owes its source an end: an unread HTTP
 * body holds its connection. (Once started, pipeline destroys the source itself.)
 */
function release(source: Readable | AsyncIterable<Uint8Array>): void {
  if (source instanceof Readable) source.destroy();
  else void source[Symbol.asyncIterator]().return?.()?.catch(() => {});
}

function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}
