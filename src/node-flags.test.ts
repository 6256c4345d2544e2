import { describe, expect, it } from 'vitest';
import { missingServerFlags, SERVER_NODE_FLAGS, withServerFlags } from './node-flags.js';

describe('withServerFlags', () => {
  it('adds the server flags after what is given', () => {
    expect(withServerFlags(['--enable-source-maps'])).toEqual(['--enable-source-maps', ...SERVER_NODE_FLAGS]);
  });

  it("leaves a flag the operator gave as it is, in either of V8's spellings", () => {
    expect(withServerFlags(['--initial-old-space-size=128'])).toEqual(['--initial-old-space-size=128']);
    expect(withServerFlags(['--initial_old_space_size=32'])).toEqual(['--initial_old_space_size=32']);
  });
});

describe('missingServerFlags', () => {
  it('names the server flags not given', () => {
    expect(missingServerFlags([])).toEqual([...SERVER_NODE_FLAGS]);
    expect(missingServerFlags(['--import', 'tsx', ...SERVER_NODE_FLAGS])).toEqual([]);
  });
});
