/**
 * Who may pull what from a protected mirror, as one predicate: `mirrorAuth` refuses pulls by
 * it and the status page lists only what its viewer could pull by it, so the two cannot tell
 * a client different things.
 */
import picomatch from 'picomatch';

export interface AccessRule {
  /** User or token names; `*` for every authenticated client. */
  users: readonly string[];
  /** Globs on `<registry>/<repository>`, e.g. `docker.io/library/*`, `ghcr.io/acme/**`. */
  repositories: readonly string[];
}

export interface PullRules {
  /** Repositories anonymous clients may pull (same globs as rules). None by default. */
  anonymous?: readonly string[];
  /** Who may pull what. Without rules every authenticated client may pull everything. */
  rules?: readonly AccessRule[];
}

/**
 * Whether `client` (a user's or token's name; undefined for an anonymous client) may pull
 * `repository`, written `<registry>/<repository>`.
 */
export type MayPull = (client: string | undefined, repository: string) => boolean;

export function pullRules({ anonymous = [], rules }: PullRules): MayPull {
  const anonymousMay = anonymous.length ? picomatch([...anonymous]) : () => false;
  const compiled = rules?.map((r) => ({ users: new Set(r.users), match: picomatch([...r.repositories]) }));
  return (client, repository) => {
    if (client === undefined) return anonymousMay(repository);
    if (!compiled) return true;
    return compiled.some((r) => (r.users.has(client) || r.users.has('*')) && r.match(repository));
  };
}

/** Whether the config has clients log in to the mirror itself; without that, the rules do not apply. */
export function isProtected(auth: { htpasswd?: string; tokens: readonly unknown[] }): boolean {
  return auth.htpasswd !== undefined || auth.tokens.length > 0;
}
