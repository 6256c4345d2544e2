export {
  MirrorEvents,
  type CacheEvent,
  type CacheResult,
  type ContentKind,
  type EvictionEvent,
  type FillEndEvent,
  type FillStartEvent,
  type MirrorEventMap,
  type MirrorEventName,
  type RequestEvent,
  type ServedEvent,
  type StoredEvent,
  type UpstreamEvent,
} from './emitter.js';
export { observeFills } from './fills.js';
export { reportCache, type CacheReport } from './report.js';
export { onResponseEnd, type ResponseEnd } from './response-end.js';
export { observeUpstream } from './upstream.js';
