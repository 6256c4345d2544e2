/**
 * The metadata records the admin commands read: tag records (`tag/<upstream>/<repository>:<tag>`,
 * written by the manifest cache) and access times (`access/<digest>`, written by eviction).
 */
import { ACCESS_PREFIX, type AccessRecord } from '../eviction/access.js';
import { parseTagKey, TAG_PREFIX } from '../manifests/keys.js';
import type { MetadataStore } from '../storage.js';


export interface TagEntry {
  key: string;
  upstream: string;
  repository: string;
  tag: string;
  digest: string;
  mediaType: string;
  /** When the upstream last confirmed the tag, ms since the epoch. */
  checkedAt: number;
}

interface TagRecord {
  digest?: unknown;
  mediaType?: unknown;
  checkedAt?: unknown;
}

export async function listTags(meta: MetadataStore): Promise<TagEntry[]> {
  const tags: TagEntry[] = [];
  for await (const [key, record] of meta.list<TagRecord>(TAG_PREFIX)) {
    const parsed = parseTagKey(key);
    if (!parsed || typeof record?.digest !== 'string') continue;
    tags.push({
      key,
      ...parsed,
      digest: record.digest,
      mediaType: typeof record.mediaType === 'string' ? record.mediaType : '',
      checkedAt: typeof record.checkedAt === 'number' ? record.checkedAt : 0,
    });
  }
  return tags;
}

export async function accessTimes(meta: MetadataStore): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  for await (const [key, record] of meta.list<AccessRecord>(ACCESS_PREFIX)) {
    if (typeof record?.at === 'number') times.set(key.slice(ACCESS_PREFIX.length), record.at);
  }
  return times;
}
