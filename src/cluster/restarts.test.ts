import { describe, expect, it } from 'vitest';
import { restarts } from './restarts.js';

describe('worker restarts', () => {
  it('replace at once while deaths are rare, later and later in a crash loop, and at once again once it is over', () => {
    const r = restarts({ burst: 3, windowMs: 60_000, maxDelayMs: 8_000 });
    let now = 0;
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const delay = r.next(now);
      delays.push(delay);
      // The replacement dies as soon as it starts.
      now += delay;
    }
    expect(delays).toEqual([0, 0, 0, 1_000, 2_000, 4_000, 8_000]);
    expect(r.next(now)).toBe(8_000);
    expect(r.next(now + 120_000)).toBe(0);
  });

  it('lets a worker that died now and then be replaced at once every time', () => {
    const r = restarts({ burst: 2, windowMs: 10_000 });
    expect([0, 6_000, 12_000, 18_000, 24_000].map((t) => r.next(t))).toEqual([0, 0, 0, 0, 0]);
  });
});
