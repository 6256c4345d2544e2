/**
 * What the page may tell, and to whom: nothing its viewer could not pull.
 *
 * An upstream whose content is private (`private`, or `forwardCredentials`) lets each client
 * read what the upstream confirms for that client, and the page cannot ask the upstream on a
 * viewer's behalf. So nothing of such an upstream is collected by name: no repository, no
 * digest, no size, only counts (a fill in flight, a request in the upstream's figures). A
 * blob is stored by digest, so a digest told is a digest anyone can ask the mirror for.
 *
 * On a protected mirror (`auth.htpasswd`, `auth.tokens`) a viewer sees the repositories the
 * pull rules let it pull, by the same predicate `mirrorAuth` refuses pulls with.
 */
import { isProtected, pullRules, type PullRules } from '../access/rules.js';

/** Whether the viewer may see `<upstream>/<repository>`. */
export type Visible = (repository: string) => boolean;

/** The upstreams of a config whose repositories are not for the page. */
export function privateUpstreams(upstreams: ReadonlyArray<{ name: string; private?: boolean; forwardCredentials?: boolean }>): string[] {
  return upstreams.filter((u) => u.private === true || u.forwardCredentials === true).map((u) => u.name);
}

export type AuthSettings = PullRules & { htpasswd?: string; tokens: readonly unknown[] };

/**
 * What each viewer (a user's or token's name, undefined for anonymous) may see on a mirror
 * with these settings; undefined when the mirror is not protected, where every viewer may
 * see every open repository.
 */
export function viewers(auth: AuthSettings | undefined): ((client: string | undefined) => Visible) | undefined {
  if (!auth || !isProtected(auth)) return undefined;
  const mayPull = pullRules(auth);
  return (client) => (repository) => mayPull(client, repository);
}
