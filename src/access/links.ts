/**
 * Links: which routes may serve a cached digest. Storage is shared by digest, access is not
 * (distribution keeps a blob out of a repository until it is linked into it): a blob or manifest
 * is served through (upstream, repository) only when that upstream fetched it or confirmed it
 * has it there. Everything else is a miss for that route, however many bytes we hold.
 *
 * A link is a record `link/<digest>/<upstream>/<repository>` in the metadata store, so replicas
 * share them, they survive restarts, and all the links of a digest are one prefix to list when
 * the digest goes. A link records a fact the upstream stated, not a claim on bytes: one without
 * its content is harmless (gc clears it), and a replica that still remembers a link another one
 * removed lets only that route serve what its upstream once confirmed.
 */
import type { MetadataStore } from '../storage.js';

export const LINK_PREFIX = 'link/';

/** The route a link names: the upstream by name and the repository as that upstream knows it. */
export interface LinkedRoute {
  upstream: { name: string };
  repository: string;
}

export const linkKey = (digest: string, route: LinkedRoute): string => `${LINK_PREFIX}${digest}/${route.upstream.name}/${route.repository}`;

export interface LinksOptions {
  /** Confirmed links kept in memory, so that a warm request costs no metadata read; default 100 000. */
  remember?: number;
  now?: () => number;
}

export class Links {
  private readonly meta: MetadataStore;
  private readonly remember: number;
  private readonly now: () => number;
  /** Keys known to be stored; dropped in insertion order past `remember`. */
  private readonly known = new Set<string>();
  /** Concurrent confirmations of one link share one upstream question. */
  private readonly pending = new Map<string, Promise<void>>();

  constructor(meta: MetadataStore, { remember = 100_000, now = Date.now }: LinksOptions = {}) {
    this.meta = meta;
    this.remember = remember;
    this.now = now;
  }

  async has(digest: string, route: LinkedRoute): Promise<boolean> {
    const key = linkKey(digest, route);
    if (this.known.has(key)) return true;
    if ((await this.meta.get(key)) === undefined) return false;
    this.keep(key);
    return true;
  }

  /** Records that `route`'s upstream has `digest`. */
  async add(digest: string, route: LinkedRoute): Promise<void> {
    const key = linkKey(digest, route);
    if (this.known.has(key)) return;
    await this.meta.set(key, { at: this.now() });
    this.keep(key);
  }

  /**
   * Resolves once `digest` may be served through `route`: linked already, or `ask` (a question
   * to the route's upstream that rejects with its OCI error when the answer is no) resolved now.
   */
  async confirm(digest: string, route: LinkedRoute, ask: () => Promise<unknown>): Promise<void> {
    if (await this.has(digest, route)) return;
    const key = linkKey(digest, route);
    let pending = this.pending.get(key);
    if (!pending) {
      pending = (async () => {
        await ask();
        await this.add(digest, route);
      })().finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    await pending;
  }

  /** Removes every link of `digest`, with the digest's content; resolves to how many there were. */
  async forget(digest: string): Promise<number> {
    return forgetLinks(this.meta, digest, (key) => this.known.delete(key));
  }

  private keep(key: string): void {
    this.known.add(key);
    if (this.known.size > this.remember) this.known.delete(this.known.values().next().value!);
  }
}

/** For tools that share the store without a running mirror's memory (purge, gc, eviction). */
export async function forgetLinks(meta: MetadataStore, digest: string, onForget?: (key: string) => void): Promise<number> {
  let removed = 0;
  for await (const [key] of meta.list(`${LINK_PREFIX}${digest}/`)) {
    onForget?.(key);
    if (await meta.delete(key)) removed++;
  }
  return removed;
}
