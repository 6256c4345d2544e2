export { LIST_PREFIX, ListCache, MAX_LIST_ENTRIES, listKey, type ListCacheOptions, type ListKind, type ListResult } from './cache.js';
export { fetchReferrers, fetchTags, referrersQuery, tagsQuery, type ReferrersIndex, type TagPage } from './upstream.js';
