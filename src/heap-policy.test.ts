import { describe, expect, it } from 'vitest';
import { heapPolicy } from './heap-policy.js';

function record(given: string[]) {
  const set: string[] = [];
  const policy = heapPolicy(given, (f) => set.push(f));
  return { set, policy };
}

describe('heapPolicy', () => {
  it('holds the young generation during start-up and lets it grow once the server listens, once', () => {
    const { set, policy } = record([]);
    expect(set).toEqual(['--semi-space-growth-factor=1']);
    policy.started();
    policy.started();
    expect(set.slice(1)).toEqual(['--semi-space-growth-factor=2']);
  });

  it("leaves alone what the operator set, in either of V8's spellings, with or without a value", () => {
    for (const given of [['--max-old-space-size=512', '--semi_space_growth_factor=3'], ['--semi-space-growth-factor=2'], ['--semi-space-growth-factor']]) {
      const { set, policy } = record(given);
      policy.started();
      expect(set).toEqual([]);
    }
    expect(record(['--semi-space-growth-factor-x=1']).set).toEqual(['--semi-space-growth-factor=1']);
  });
});
