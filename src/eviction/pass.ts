/**
 * One eviction pass over the index: plan, then remove the victims one by one, re-checking each
 * against what happened since the plan (a request for it, a manifest that now references it).
 */
import type { MirrorEvents } from '../events/index.js';
import { TAG_PREFIX } from '../manifests/keys.js';
import type { Storage } from '../storage.js';
import { planEviction, type PlanNode, type Victim } from './plan.js';
import { removeContent } from './remove.js';
import type { StoreIndex } from './store-index.js';

export interface EvictionPass {
  evicted: number;
  bytes: number;
  /** The batch limit stopped the pass; another follows soon. */
  more: boolean;
  /** Another replica held the turn: this one removed nothing. */
  elsewhere?: boolean;
}

export interface PassContext {
  index: StoreIndex;
  storage: Storage;
  events: MirrorEvents;
  /** Being served or filled here: never removed, whatever the plan. */
  isPinned: (digest: string) => boolean;
  /** Not to be removed by a plan made at `at` (pinned, or used recently on another replica). */
  inUse: (digest: string, at: number) => boolean;
  now: () => number;
  ttl?: number;
  maxBytes?: number;
  batch: number;
}

export async function evictNow(ctx: PassContext): Promise<EvictionPass> {
  const { index } = ctx;
  await index.readReferences();
  const started = ctx.now();
  const view = new Map<string, PlanNode>();
  for (const [digest, node] of index.nodes) view.set(digest, { size: node.size, kind: node.kind, lastAccess: index.lastAccess(digest, node), refs: node.refs });
  const plan = planEviction({ nodes: view, isPinned: (digest) => ctx.inUse(digest, started), now: started, ttl: ctx.ttl, maxBytes: ctx.maxBytes, limit: ctx.batch });

  const result: EvictionPass = { evicted: 0, bytes: 0, more: plan.more };
  const gone = new Set<string>();
  /** What a manifest kept after all (or one cached since the plan) references: it stays too. */
  const kept = new Set<string>();
  for (const victim of plan.victims) {
    for (const ref of await index.readReferences()) kept.add(ref);
    if (kept.has(victim.digest) || !stillEvictable(ctx, victim, started)) {
      // The plan freed this manifest's references on the assumption that it goes.
      for (const ref of index.nodes.get(victim.digest)?.refs ?? []) kept.add(ref);
      continue;
    }
    await evict(ctx, victim);
    gone.add(victim.digest);
    result.evicted++;
    result.bytes += victim.size;
  }
  if (plan.victims.some((v) => v.kind === 'manifest' && gone.has(v.digest))) await forgetTags(ctx.storage, gone);
  return result;
}

/** The plan is a snapshot; a request may have come for the object since. */
function stillEvictable({ index, isPinned }: PassContext, victim: Victim, plannedAt: number): boolean {
  const node = index.nodes.get(victim.digest);
  if (!node || isPinned(victim.digest)) return false;
  return index.lastAccess(victim.digest, node) <= plannedAt;
}

async function evict({ storage, index, events }: PassContext, victim: Victim): Promise<void> {
  const { digest, kind } = victim;
  await removeContent(storage, digest, kind);
  index.remove(digest);
  events.emit('eviction', { digest, kind, bytes: victim.size, reason: victim.reason });
}

/** Tags that pointed at removed manifests would only ever lead to a miss. */
async function forgetTags(storage: Storage, gone: ReadonlySet<string>): Promise<void> {
  for await (const [key, record] of storage.meta.list<{ digest?: string }>(TAG_PREFIX)) {
    if (record.digest !== undefined && gone.has(record.digest)) await storage.meta.delete(key);
  }
}
