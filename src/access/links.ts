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
  /** Links known to be stored, by digest; the oldest digests are dropped past `remember` links. */
  private readonly known = new Map<string, Set<string>>();
  private knownCount = 0;
  /** Concurrent confirmations of one link share one upstream question. */
  private readonly pending = new Map<string, Promise<void>>();

  constructor(meta: MetadataStore, { remember = 100_000, now = Date.now }: LinksOptions = {}) {
    this.meta = meta;
    this.remember = remember;
    this.now = now;
  }

  async has(digest: string, route: LinkedRoute): Promise<boolean> {
    if (this.remembers(digest, route)) return true;
    if ((await this.meta.get(linkKey(digest, route))) === undefined) return false;
    this.keep(digest, route);
    return true;
  }

  /**
   * Records that `route`'s upstream has `digest`. Memory holds the link at once, while the record
   * is written: the upstream has just said so, and a request through that route meanwhile (the
   * fill's own client, say) must not ask it again. A record that cannot be written is forgotten.
   */
  async add(digest: string, route: LinkedRoute): Promise<void> {
    if (this.remembers(digest, route)) return;
    this.keep(digest, route);
    try {
      await this.meta.set(linkKey(digest, route), { at: this.now() });
    } catch (err) {
      this.unkeep(digest, route);
      throw err;
    }
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
    this.removed(digest);
    return forgetLinks(this.meta, digest);
  }

  /** The digest's content and links were removed from the store (eviction, purge): forget what memory holds of them. */
  removed(digest: string): void {
    this.knownCount -= this.known.get(digest)?.size ?? 0;
    this.known.delete(digest);
  }

  private remembers(digest: string, route: LinkedRoute): boolean {
    return this.known.get(digest)?.has(routeKey(route)) === true;
  }

  private unkeep(digest: string, route: LinkedRoute): void {
    const routes = this.known.get(digest);
    if (!routes?.delete(routeKey(route))) return;
    this.knownCount--;
    if (routes.size === 0) this.known.delete(digest);
  }

  private keep(digest: string, route: LinkedRoute): void {
    let routes = this.known.get(digest);
    if (!routes) this.known.set(digest, (routes = new Set()));
    const key = routeKey(route);
    if (routes.has(key)) return;
    routes.add(key);
    this.knownCount++;
    // A Map iterates in insertion order: the digest remembered first goes first.
    while (this.knownCount > this.remember && this.known.size > 1) this.removed(this.known.keys().next().value!);
  }
}

const routeKey = (route: LinkedRoute) => `${route.upstream.name}/${route.repository}`;

/** For what removes content from the store (eviction, purge): a running mirror's memory learns of it through `removed`. */
export async function forgetLinks(meta: MetadataStore, digest: string): Promise<number> {
  let removed = 0;
  for await (const [key] of meta.list(`${LINK_PREFIX}${digest}/`)) {
    if (await meta.delete(key)) removed++;
  }
  return removed;
}
