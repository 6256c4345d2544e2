/**
 * Eviction's index of what the store holds: each object's size, kind, when the index learnt of
 * it and (for manifests) what it references. Built by a scan of the store, which also reconciles
 * metadata whose bytes are gone (a crash between two deletes), and kept current by the
 * scheduler (evictor.ts) from the mirror's events.
 */
import type { ContentKind } from '../events/index.js';
import { MANIFEST_PREFIX } from '../manifests/keys.js';
import { manifestReferences } from '../manifests/parse.js';
import { readStoredManifest } from '../manifests/stored.js';
import type { Storage } from '../storage.js';
import { ACCESS_PREFIX, type AccessLog, type AccessRecord } from './access.js';

export interface IndexNode {
  size: number;
  kind: ContentKind;
  /** When the index learnt of it: the last access for want of a recorded one. */
  addedAt: number;
  refs?: readonly string[];
}

export interface ScanResult {
  objects: number;
  bytes: number;
  /** Metadata records removed because their bytes were gone. */
  reconciled: number;
}

export interface StoreIndexOptions {
  storage: Storage;
  access: AccessLog;
  maxManifestBytes: number;
  now: () => number;
  /** Being served or filled: a scan must not drop it for missing from a listing. */
  isPinned: (digest: string) => boolean;
  /** Told the new total after every object added. */
  onGrow?: (bytes: number) => void;
}

export class StoreIndex {
  readonly nodes = new Map<string, IndexNode>();
  /** Manifests whose references are not read yet. */
  private readonly unread = new Set<string>();
  private total = 0;
  /** When the last scan began (now()). */
  scannedAt = -Infinity;

  constructor(private readonly options: StoreIndexOptions) {}

  get bytes(): number {
    return this.total;
  }

  add(digest: string, size: number, kind: ContentKind): void {
    const node = this.nodes.get(digest);
    if (node) {
      // The bytes were there first; the manifest record says what they are.
      if (kind === 'manifest' && node.kind !== 'manifest') {
        node.kind = 'manifest';
        this.unread.add(digest);
      }
      return;
    }
    this.nodes.set(digest, { size, kind, addedAt: this.options.now() });
    this.total += size;
    if (kind === 'manifest') this.unread.add(digest);
    this.options.onGrow?.(this.total);
  }

  remove(digest: string): void {
    const node = this.nodes.get(digest);
    if (!node) return;
    this.nodes.delete(digest);
    this.unread.delete(digest);
    this.total -= node.size;
    this.options.access.forget(digest);
  }

  lastAccess(digest: string, node: IndexNode): number {
    return this.options.access.get(digest) ?? node.addedAt;
  }

  /** Lists the store into the index and reconciles manifest and access records with it. */
  async scan(): Promise<ScanResult> {
    const { storage, access, now, isPinned } = this.options;
    let reconciled = 0;
    const since = now();
    this.scannedAt = since;
    const listed = new Set<string>();
    for await (const { digest, size } of storage.blobs.list()) {
      listed.add(digest);
      this.add(digest, size, 'blob');
    }
    // Gone since the index learnt of it: evicted or purged by another replica. What arrived
    // during the listing may have been missed by it, and stays.
    for (const [digest, node] of this.nodes) if (!listed.has(digest) && node.addedAt < since && !isPinned(digest)) this.remove(digest);
    for await (const [key] of storage.meta.list(MANIFEST_PREFIX)) {
      const digest = key.slice(MANIFEST_PREFIX.length);
      if (this.nodes.has(digest)) this.add(digest, 0, 'manifest');
      else {
        // Stored after the listing went past it? Then it is no orphan.
        const info = await storage.blobs.stat(digest).catch(() => undefined);
        if (info) this.add(digest, info.size, 'manifest');
        else if ((await storage.meta.delete(key)) === true) reconciled++;
      }
    }
    for await (const [key, record] of storage.meta.list<AccessRecord>(ACCESS_PREFIX)) {
      const digest = key.slice(ACCESS_PREFIX.length);
      if (this.nodes.has(digest)) access.merge(digest, record.at);
      else if (!(await storage.blobs.stat(digest).catch(() => undefined)) && (await storage.meta.delete(key))) reconciled++;
    }
    return { objects: this.nodes.size, bytes: this.total, reconciled };
  }

  /** Reads the references of manifests new to the index; returns every reference it read. */
  async readReferences(): Promise<Set<string>> {
    const read = new Set<string>();
    for (const digest of [...this.unread]) {
      this.unread.delete(digest);
      const node = this.nodes.get(digest);
      if (!node) continue;
      let stored;
      try {
        stored = await readStoredManifest(this.options.storage, digest, this.options.maxManifestBytes);
      } catch {
        node.refs = [];
        continue;
      }
      if (!stored) {
        this.remove(digest); // gone behind our back
        continue;
      }
      node.refs = manifestReferences(stored.body);
      for (const ref of node.refs) read.add(ref);
    }
    return read;
  }
}
