/** A fake upstream per test and the mirrors a test starts in front of it, disposed after each test. */
import { afterEach, beforeEach } from 'vitest';
import type { MirrorConfigInput } from '../../src/config.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startTestMirror, type TestMirror, type TestMirrorOptions } from '../helpers/mirror.js';

export interface OpsFixture {
  readonly upstream: FakeUpstream;
  mirror(config?: Partial<MirrorConfigInput>, options?: TestMirrorOptions & { upstreamUrl?: string }): Promise<TestMirror>;
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
    async mirror(config = {}, { upstreamUrl, ...options } = {}) {
      const m = await startTestMirror(upstreamUrl ?? this.upstream.url, config, options);
      mirrors.push(m);
      return m;
    },
  };
}
