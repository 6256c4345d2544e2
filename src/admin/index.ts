export { gc, type GcDeps, type GcResult } from './gc.js';
export { formatPlatform, parsePlatform, resolveImage, splitReference, type ImageRef, type Platform } from './image-ref.js';
export { listCached, type CachedImage, type ListDeps } from './list.js';
export { plainReporter, ttyReporter, type WarmReporter } from './progress.js';
export { purge, type PurgeDeps, type PurgeResult } from './purge.js';
export { warmImage, warmImages, type WarmDeps, type WarmEvent, type WarmOptions, type WarmReport, type WarmResult } from './warm.js';
