/** A mirror on a free loopback port over a fresh data directory, for integration tests. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { fsStorage } from '../../adapters/fs/index.js';
import type { Storage } from '../../src/storage.js';
import { parseConfig, type MirrorConfigInput } from '../../src/config.js';
import { startServer, type MirrorServer } from '../../src/server.js';

export interface TestMirror extends MirrorServer {
  dataDir: string;
  /** Files under the data directory's tmp/ (in-progress or leftover writes). */
  temporaries(): Promise<string[]>;
  dispose(): Promise<void>;
}

export interface TestMirrorOptions {
  /** Reuses an earlier mirror's storage, as a restart would. */
  dataDir?: string;
  /**
   * Hides the fs store's spool capability, so fills commit through `put()` the way a store
   * without local files (S3, Keyv) does.
   */
  withoutSpool?: boolean;
  /** Builds the storage over the data directory instead (to wrap, count or break it). */
  storage?: (dataDir: string) => Storage;
  /** Instead of a silent one (or TEST_LOG_LEVEL's), to look at what the mirror logs. */
  logger?: Logger;
}

export async function startTestMirror(
  upstreamUrl: string,
  config: Partial<MirrorConfigInput> = {},
  { dataDir: reuse, withoutSpool = false, storage: custom, logger }: TestMirrorOptions = {},
): Promise<TestMirror> {
  const dataDir = reuse ?? (await mkdtemp(join(tmpdir(), 'oci-mirror-test-')));
  let storage = custom?.(dataDir);
  if (withoutSpool) {
    const fs = fsStorage({ path: dataDir, fsync: false });
    const { spool: _spool, ...blobs } = fs.blobs;
    storage = { blobs, meta: fs.meta };
  }
  const server = await startServer(
    parseConfig({
      listen: '127.0.0.1:0',
      storage: { type: 'fs', path: dataDir, fsync: false },
      upstreams: [{ name: 'registry.test', url: upstreamUrl, timeouts: { connect: '2s', headers: '5s', body: '5s' } }],
      shutdownGrace: '2s',
      ...config,
    }),
    { logger: logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }), storage },
  );
  return Object.assign(server, {
    dataDir,
    async temporaries() {
      const entries = await readdir(join(dataDir, 'tmp'), { recursive: true, withFileTypes: true }).catch(() => []);
      return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
    },
    async dispose() {
      await server.close(1000);
      await rm(dataDir, { recursive: true, force: true });
    },
  });
}

/**
 * What the store says of `digest` once it is there. A client has a fill's last byte once the
 * digest checks; the commit (fsync, rename) may end a moment later, so a test that pulled and
 * then looks in the store waits for it (bounded; a blob never stored fails the wait).
 */
export async function storedSoon(storage: Pick<Storage, 'blobs'>, digest: string, timeoutMs = 20_000): Promise<{ size: number }> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const info = await storage.blobs.stat(digest);
    if (info) return info;
    if (performance.now() > deadline) throw new Error(`${digest} was not stored within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
