import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { manifestReferences, planEviction, type PlanInput, type PlanNode } from './index.js';

const d = (n: string) => `sha256:${n.padStart(64, '0')}`;

/** Nodes from a terse spec: name → [size, lastAccess, refs?]; a node with refs is a manifest. */
function nodes(spec: Record<string, [number, number, string[]?]>): Map<string, PlanNode> {
  return new Map(
    Object.entries(spec).map(([name, [size, lastAccess, refs]]) => [
      d(name),
      { size, lastAccess, kind: refs ? 'manifest' : 'blob', refs: refs?.map(d) },
    ]),
  );
}

const name = (digest: string) => digest.slice('sha256:'.length).replace(/^0+/, '');

function plan(input: Partial<PlanInput> & Pick<PlanInput, 'nodes'>) {
  const result = planEviction({ isPinned: () => false, now: 1000, limit: 100, ...input });
  return { ...result, names: result.victims.map((v) => `${name(v.digest)}:${v.reason}`) };
}

describe('eviction plan', () => {
  // Two images share layer s; a is older.
  const shared = () =>
    nodes({
      a: [10, 1, ['ac', 'al', 's']],
      ac: [100, 2],
      al: [100, 3],
      s: [100, 4],
      b: [10, 5, ['bc', 'bl', 's']],
      bc: [100, 6],
      bl: [100, 7],
    });

  it('removes the least recently used image and keeps a layer another image shares', () => {
    const p = plan({ nodes: shared(), maxBytes: 320 });
    expect(p.names).toEqual(['a:size', 'ac:size', 'al:size']);
    expect(p.bytesAfter).toBe(310);
  });

  it('stops as soon as the store fits', () => {
    expect(plan({ nodes: shared(), maxBytes: 420 }).names).toEqual(['a:size', 'ac:size']);
    expect(plan({ nodes: shared(), maxBytes: 520 }).names).toEqual([]);
  });

  it('removes the shared layer only with the last image that references it', () => {
    expect(plan({ nodes: shared(), maxBytes: 0 }).names).toEqual(['a:size', 'ac:size', 'al:size', 'b:size', 's:size', 'bc:size', 'bl:size']);
  });

  it('expires by last access, and never a blob that a fresh manifest references', () => {
    // Every blob is old, but b was pulled recently: it keeps its blobs, s included.
    const n = shared();
    n.get(d('b'))!.lastAccess = 950;
    expect(plan({ nodes: n, ttl: 100 }).names).toEqual(['a:ttl', 'ac:ttl', 'al:ttl']);
  });

  it('keeps what an index references: its child manifests and their blobs', () => {
    const n = nodes({
      idx: [10, 950, ['m1', 'm2']],
      m1: [10, 1, ['x']],
      m2: [10, 1, ['y']],
      x: [100, 1],
      y: [100, 1],
      loose: [100, 2],
    });
    expect(plan({ nodes: n, ttl: 100 }).names).toEqual(['loose:ttl']);
    n.get(d('idx'))!.lastAccess = 3;
    expect(plan({ nodes: n, ttl: 100 }).names.sort()).toEqual(['idx:ttl', 'loose:ttl', 'm1:ttl', 'm2:ttl', 'x:ttl', 'y:ttl']);
  });

  it('never takes what is pinned, nor what a pinned manifest references', () => {
    const pinned = new Set([d('a'), d('bl')]);
    const p = plan({ nodes: shared(), maxBytes: 0, isPinned: (x) => pinned.has(x) });
    expect(p.names).toEqual(['b:size', 'bc:size']);
    expect(p.bytesAfter).toBe(410);
  });

  it('takes at most the limit per pass and says there is more', () => {
    const p = plan({ nodes: shared(), maxBytes: 0, limit: 2 });
    expect(p.names).toEqual(['a:size', 'ac:size']);
    expect(p.more).toBe(true);
  });
});

describe('manifest references', () => {
  it('reads configs, layers, child manifests, artifact blobs and schema 1 layers, not subjects', () => {
    const body = (o: object) => Buffer.from(JSON.stringify(o));
    expect(
      manifestReferences(body({ config: { digest: d('c') }, layers: [{ digest: d('a1') }, { digest: d('a2') }], subject: { digest: d('5') } })),
    ).toEqual([d('c'), d('a1'), d('a2')]);
    expect(manifestReferences(body({ manifests: [{ digest: d('e1') }, { digest: d('e2') }] }))).toEqual([d('e1'), d('e2')]);
    expect(manifestReferences(body({ blobs: [{ digest: d('b') }] }))).toEqual([d('b')]);
    expect(manifestReferences(body({ fsLayers: [{ blobSum: d('f') }, { blobSum: d('f') }] }))).toEqual([d('f')]);
    expect(manifestReferences(body({ layers: [{ digest: '../../etc/passwd' }, null, 7] }))).toEqual([]);
    expect(manifestReferences(Buffer.from('not json'))).toEqual([]);
  });
});

describe('eviction config', () => {
  it('takes sizes with units and keeps eviction off by default', () => {
    const c = parseConfig({ cache: { maxBytes: '1.5GiB', ttl: '14d' } });
    expect([c.cache.maxBytes, c.cache.ttl, c.cache.evictionInterval, c.cache.evictionBatch]).toEqual([1.5 * 1024 ** 3, 14 * 86_400_000, 60_000, 1000]);
    expect(parseConfig({ cache: { maxBytes: 500 } }).cache.maxBytes).toBe(500);
    expect(parseConfig({ cache: { maxBytes: '500MB' } }).cache.maxBytes).toBe(500_000_000);
    const defaults = parseConfig({}).cache;
    expect([defaults.maxBytes, defaults.ttl]).toEqual([undefined, undefined]);
    expect(() => parseConfig({ cache: { maxBytes: 'lots' } })).toThrow(/cache\.maxBytes: "lots" is not a size/);
  });
});
