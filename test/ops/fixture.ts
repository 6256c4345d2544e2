/** A fake upstream per test and the mirrors a test starts in front of it, disposed after each test. */
import { afterEach, beforeEach } from 'vitest';
import { fsStorage } from '../../adapters/fs/index.js';
import type { MirrorConfigInput } from '../../src/config.js';
import type { Storage } from '../../src/storage.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startTestMirror, type TestMirror, type TestMirrorOptions } from '../helpers/mirror.js';

export interface OpsMirrorOptions extends TestMirrorOptions {
  upstreamUrl?: string;
  /** Wraps the data directory's fs storage (to count or fail its calls). */
  wrap?: (storage: Storage) => Storage;
}

export interface OpsFixture {
  readonly upstream: FakeUpstream;
  mirror(config?: Partial<MirrorConfigInput>, options?: OpsMirrorOptions): Promise<TestMirror>;
}

export function opsFixture(): OpsFixture {
  let upstream: FakeUpstream | undefined;
  const mirrors: TestMirror[] = [];
  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await Promise.all(mirrors.splice(0).map((m) => m.dispose()));
    await upstream?.close();
  });
  return {
    get upstream() {
      if (!upstream) throw new Error('opsFixture is used outside a test');
      return upstream;
    },
    async mirror(config = {}, { upstreamUrl, wrap, ...options } = {}) {
      const storage = wrap && ((dataDir: string) => wrap(fsStorage({ path: dataDir, fsync: false })));
      const m = await startTestMirror(upstreamUrl ?? this.upstream.url, config, { ...options, storage });
      mirrors.push(m);
      return m;
    },
  };
}
