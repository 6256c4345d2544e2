/**
 * Tokens one upstream has earned, per (realm, service, scope, identity) key, handed out only
 * while they will outlive the request they go on, and bounded in number.
 */

export interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Stop handing out a token this long before it expires: it must outlive the request it goes on. */
const EXPIRY_MARGIN_MS = 10_000;
const MAX_CACHED = 1024;

export class TokenCache {
  private readonly entries = new Map<string, CachedToken>();

  /** The token under `key` while it is still good for a while; an expiring one is dropped. */
  fresh(key: string): string | undefined {
    const hit = this.entries.get(key);
    if (hit === undefined) return undefined;
    if (usable(hit, Date.now())) return hit.token;
    this.entries.delete(key);
    return undefined;
  }

  /** Keeps a token that is still usable; when full, expiring entries go first, then the oldest. */
  remember(key: string, entry: CachedToken): void {
    if (!usable(entry, Date.now())) return;
    this.entries.delete(key);
    if (this.entries.size >= MAX_CACHED) {
      const now = Date.now();
      for (const [k, v] of this.entries) if (!usable(v, now)) this.entries.delete(k);
      if (this.entries.size >= MAX_CACHED) this.entries.delete(this.entries.keys().next().value as string);
    }
    this.entries.set(key, entry);
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

function usable({ expiresAt }: CachedToken, now: number): boolean {
  return expiresAt - EXPIRY_MARGIN_MS > now;
}
