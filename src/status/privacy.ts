/**
 * What the page may say about a repository. An upstream whose content is private (`private`,
 * or `forwardCredentials`) must not have its repository names told to whoever opens the page:
 * they all show as one `<upstream>/(private)`.
 */
export type RepositoryLabel = (upstream: string, repository: string) => string;

export function repositoryLabel(privateUpstreams: Iterable<string>): RepositoryLabel {
  const hidden = new Set(privateUpstreams);
  return (upstream, repository) => (hidden.has(upstream) ? `${upstream}/(private)` : `${upstream}/${repository}`);
}

/** The upstreams of a config whose repositories are not for the page. */
export function privateUpstreams(upstreams: ReadonlyArray<{ name: string; private?: boolean; forwardCredentials?: boolean }>): string[] {
  return upstreams.filter((u) => u.private === true || u.forwardCredentials === true).map((u) => u.name);
}
