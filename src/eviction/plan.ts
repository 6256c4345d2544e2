/**
 * Which objects one eviction pass removes, decided without touching storage so that the rules
 * can be tested on their own.
 *
 * Manifests are roots: a manifest keeps what it references (an index its child manifests, a
 * manifest its config and layers) for as long as it is kept itself. Only objects nothing kept
 * refers to are candidates, least recently used first. A candidate goes when it has not been
 * accessed for `ttl`, or while the store is over `maxBytes`. Removing a manifest frees what
 * only it referenced, which then competes like any other candidate; what another kept manifest
 * still references stays. Pinned objects (being served or filled) are never candidates, and
 * what they reference stays too.
 */
import type { ContentKind } from '../events/index.js';

export interface PlanNode {
  size: number;
  kind: ContentKind;
  /** ms since the epoch. */
  lastAccess: number;
  /** For manifests: the digests they reference. */
  refs?: readonly string[];
}

export interface PlanInput {
  nodes: ReadonlyMap<string, PlanNode>;
  isPinned(digest: string): boolean;
  now: number;
  ttl?: number;
  maxBytes?: number;
  /** The most victims one pass may take. */
  limit: number;
}

export interface Victim {
  digest: string;
  kind: ContentKind;
  size: number;
  reason: 'ttl' | 'size';
}

export interface Plan {
  victims: Victim[];
  /** Bytes left once the victims are gone. */
  bytesAfter: number;
  /** The limit stopped the pass while there was more to do. */
  more: boolean;
}

export function planEviction({ nodes, isPinned, now, ttl, maxBytes, limit }: PlanInput): Plan {
  const referrers = new Map<string, number>();
  let bytes = 0;
  for (const node of nodes.values()) {
    bytes += node.size;
    for (const ref of node.refs ?? []) referrers.set(ref, (referrers.get(ref) ?? 0) + 1);
  }

  const heap = new MinHeap<string>();
  const offer = (digest: string) => {
    const node = nodes.get(digest);
    if (node && !isPinned(digest) && !referrers.get(digest)) heap.push(node.lastAccess, digest);
  };
  for (const digest of nodes.keys()) offer(digest);

  const victims: Victim[] = [];
  for (;;) {
    const digest = heap.peek();
    if (digest === undefined) break;
    const node = nodes.get(digest)!;
    const reason = ttl !== undefined && now - node.lastAccess > ttl ? 'ttl' : maxBytes !== undefined && bytes > maxBytes ? 'size' : undefined;
    // The oldest candidate needs no removal, so no newer one does either.
    if (!reason) break;
    if (victims.length >= limit) return { victims, bytesAfter: bytes, more: true };
    heap.pop();
    victims.push({ digest, kind: node.kind, size: node.size, reason });
    bytes -= node.size;
    for (const ref of node.refs ?? []) {
      const left = (referrers.get(ref) ?? 0) - 1;
      referrers.set(ref, left);
      if (left === 0) offer(ref);
    }
  }
  return { victims, bytesAfter: bytes, more: false };
}

/** A binary min-heap on a numeric key. */
class MinHeap<T> {
  private readonly items: Array<{ key: number; value: T }> = [];

  push(key: number, value: T): void {
    const items = this.items;
    items.push({ key, value });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.key <= key) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = { key, value };
  }

  peek(): T | undefined {
    return this.items[0]?.value;
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (!top || !last || items.length === 0) return top?.value;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      const key = (j: number) => (j === i ? last.key : items[j]!.key);
      if (l < items.length && items[l]!.key < key(smallest)) smallest = l;
      if (r < items.length && items[r]!.key < key(smallest)) smallest = r;
      if (smallest === i) break;
      items[i] = items[smallest]!;
      i = smallest;
    }
    items[i] = last;
    return top.value;
  }
}
