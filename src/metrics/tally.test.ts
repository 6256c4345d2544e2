import { describe, expect, it } from 'vitest';
import { Tally } from './tally.js';

const drained = (tally: Tally) => {
  const out: Array<[Record<string, string>, number]> = [];
  tally.drain((labels, n) => out.push([labels, n]));
  return out;
};

describe('Tally', () => {
  it('hands each combination of label values its sum once, then only what came since', () => {
    const tally = new Tally(['route', 'method', 'status']);
    tally.add(1, 'blob', 'GET', '200');
    tally.add(1, 'blob', 'GET', '200');
    tally.add(1, 'blob', 'HEAD', '200');
    tally.add(1, 'manifest', 'GET', '404');
    expect(drained(tally)).toEqual([
      [{ route: 'blob', method: 'GET', status: '200' }, 2],
      [{ route: 'blob', method: 'HEAD', status: '200' }, 1],
      [{ route: 'manifest', method: 'GET', status: '404' }, 1],
    ]);
    expect(drained(tally)).toEqual([]);
    tally.add(5, 'blob', 'GET', '200');
    expect(drained(tally)).toEqual([[{ route: 'blob', method: 'GET', status: '200' }, 5]]);
  });

  it('labels only the names it was given', () => {
    const tally = new Tally(['kind', 'source']);
    tally.add(4096, 'blob', 'cache');
    expect(drained(tally)).toEqual([[{ kind: 'blob', source: 'cache' }, 4096]]);
    const one = new Tally(['kind']);
    one.add(1, 'manifest');
    expect(drained(one)).toEqual([[{ kind: 'manifest' }, 1]]);
  });

  it('refuses no labels and more than three', () => {
    expect(() => new Tally([])).toThrow(RangeError);
    expect(() => new Tally(['a', 'b', 'c', 'd'])).toThrow(RangeError);
  });
});
