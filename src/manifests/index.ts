export { ManifestCache, type ManifestCacheOptions, type ManifestEntry, type ManifestResult } from './cache.js';
export { DEFAULT_MAX_MANIFEST_BYTES, MANIFEST_PREFIX, TAG_PREFIX, manifestKey, parseTagKey, tagKey, tagRecordExpiry } from './keys.js';
export { manifestReferences, parseManifest, type Descriptor, type ParsedManifest, type Platform } from './parse.js';
export { readStoredManifest, type ManifestRecord } from './stored.js';
