import { describe, expect, it } from 'vitest';
import { missingServerFlags, SERVER_NODE_FLAGS, withServerFlags } from './node-flags.js';

describe('withServerFlags', () => {
  it('adds the server flags after what is given', () => {
    expect(withServerFlags(['--enable-source-maps'])).toEqual(['--enable-source-maps', ...SERVER_NODE_FLAGS]);
  });

  it("leaves a flag the operator gave as it is, in either of V8's spellings", () => {
    const others = SERVER_NODE_FLAGS.filter((f) => !f.startsWith('--initial-old-space-size='));
    expect(withServerFlags(['--initial-old-space-size=128'])).toEqual(['--initial-old-space-size=128', ...others]);
    expect(withServerFlags(['--initial_old_space_size=32'])).toEqual(['--initial_old_space_size=32', ...others]);
    expect(withServerFlags(['--max_semi_space_size=16', '--initial-old-space-size=8'])).toEqual(['--max_semi_space_size=16', '--initial-old-space-size=8']);
  });
});

describe('missingServerFlags', () => {
  it('names the server flags not given', () => {
    expect(missingServerFlags([])).toEqual([...SERVER_NODE_FLAGS]);
    expect(missingServerFlags(['--import', 'tsx', ...SERVER_NODE_FLAGS])).toEqual([]);
  });
});
