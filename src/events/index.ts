export {
  MirrorEvents,
  type CacheEvent,
  type CacheResult,
  type ContentKind,
  type EvictionEvent,
  type FillEndEvent,
  type FillStartEvent,
  type ListEvent,
  type MirrorEventMap,
  type MirrorEventName,
  type RequestEvent,
  type ServedEvent,
  type StoredEvent,
  type UpstreamEvent,
} from './emitter.js';
export type { BackoffEvent } from '../upstream/rate-limit.js';
export { observeFills } from './fills.js';
export { observeUpstream } from './upstream.js';
