/**
 * Which upstream serves a request, and under what repository name. In this order:
 * 1. containerd's `?ns=<registry host>`: only hosts the config lists; any other is refused,
 *    never fetched (a mirror must not be an open proxy);
 * 2. a leading path segment naming a configured registry (`/v2/ghcr.io/org/app/…`), stripped;
 * 3. the default upstream.
 * Docker Hub's rules apply where the upstream is Docker Hub: its three host names are one
 * registry, and a single-segment name means `library/<name>`.
 *
 * An upstream's `allow` and `deny` globs are checked here, on the repository as that upstream
 * knows it, so that every way of reaching it (a request in any routing form, warm-up, prefetch,
 * a fallback) is refused before any cache or upstream is consulted: a denied repository is
 * answered `404 NAME_UNKNOWN`, as a name the mirror does not carry, even when it is cached.
 */
import picomatch from 'picomatch';
import { OciError } from '../errors.js';
import type { UpstreamTarget } from '../state.js';
import type { Upstream } from './types.js';

export interface UpstreamRoute {
  upstream: Upstream;
  /** Other host names (or short names) that mean this registry. */
  aliases?: readonly string[];
  /** Takes names that name no registry. Without one marked, the first upstream does. */
  default?: boolean;
  /** Repository globs (upstream-side, e.g. `library/*`) that are mirrored; absent: every repository. */
  allow?: readonly string[];
  /** Repository globs never mirrored, whatever `allow` says. */
  deny?: readonly string[];
}

export interface FallbackGroup {
  /** Upstream names, in the order they are tried. */
  upstreams: readonly string[];
  /**
   * Repository patterns (globs on the upstream-side name, e.g. `library/*`) whose tags may
   * also resolve from later members. Digests always may: they are verified.
   */
  tags?: readonly string[];
}

export interface RoutingOptions {
  upstreams: ReadonlyArray<Upstream | UpstreamRoute>;
  fallbackGroups?: readonly FallbackGroup[];
}

export const DOCKER_HUB_HOSTS: readonly string[] = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

export interface ResolveOptions {
  /**
   * `false`: ignore the upstreams' `allow` and `deny`, for operations that only remove what is
   * cached (purge), which a repository denied after it was cached needs most.
   */
  filtered?: boolean;
}

export interface Routing {
  /** Resolves a client-facing name (and containerd's `ns`) to a target; throws NAME_UNKNOWN for a refused `ns` or a denied repository. */
  resolve(name: string, ns?: string, options?: ResolveOptions): UpstreamTarget;
  readonly defaultUpstream: Upstream;
}

interface Entry {
  upstream: Upstream;
  dockerHub: boolean;
  /** Whether the upstream's `allow` and `deny` let this repository through. */
  admits: (repository: string) => boolean;
}

function repositoryFilter({ allow, deny }: Pick<UpstreamRoute, 'allow' | 'deny'>): (repository: string) => boolean {
  const allowed = allow === undefined ? () => true : picomatch([...allow]);
  const denied = deny?.length ? picomatch([...deny]) : () => false;
  return (repository) => allowed(repository) && !denied(repository);
}

export function createRouting({ upstreams, fallbackGroups = [] }: RoutingOptions): Routing {
  const routes = upstreams.map((u): UpstreamRoute => ('upstream' in u ? u : { upstream: u }));
  if (routes.length === 0) throw new TypeError('at least one upstream is needed');
  const hosts = new Map<string, Entry>();
  const byName = new Map<string, Entry>();
  for (const route of routes) {
    const names = [route.upstream.name, ...(route.aliases ?? [])].map((h) => h.toLowerCase());
    const dockerHub = names.some((n) => DOCKER_HUB_HOSTS.includes(n));
    const entry: Entry = { upstream: route.upstream, dockerHub, admits: repositoryFilter(route) };
    for (const host of dockerHub ? [...names, ...DOCKER_HUB_HOSTS] : names) {
      const claimed = hosts.get(host);
      if (claimed && claimed.upstream !== route.upstream) {
        throw new TypeError(`registry name "${host}" is claimed by both ${claimed.upstream.name} and ${route.upstream.name}`);
      }
      hosts.set(host, entry);
    }
    byName.set(route.upstream.name, entry);
  }
  const defaults = routes.filter((r) => r.default);
  if (defaults.length > 1) throw new TypeError(`only one upstream can be the default (${defaults.map((r) => r.upstream.name).join(', ')})`);
  const fallback = byName.get((defaults[0] ?? routes[0]!).upstream.name)!;

  const groups = fallbackGroups.map((g) => {
    for (const n of g.upstreams) if (!byName.has(n)) throw new TypeError(`fallback group names unknown upstream "${n}"`);
    return { members: g.upstreams.map((n) => byName.get(n)!), tags: g.tags?.length ? picomatch([...g.tags]) : undefined };
  });

  const repositoryOn = (entry: Entry, name: string) => (entry.dockerHub && !name.includes('/') ? `library/${name}` : name);

  function target(entry: Entry, name: string, filtered: boolean): UpstreamTarget {
    const repository = repositoryOn(entry, name);
    if (filtered && !entry.admits(repository)) {
      throw new OciError('NAME_UNKNOWN', `repository ${repository.slice(0, 200)} of ${entry.upstream.name} is not mirrored here`, { status: 404 });
    }
    const digestFallbacks: UpstreamTarget[] = [];
    const tagFallbacks: UpstreamTarget[] = [];
    for (const group of groups) {
      if (!group.members.includes(entry)) continue;
      for (const other of group.members) {
        if (other === entry || digestFallbacks.some((t) => t.upstream === other.upstream)) continue;
        // A member that does not mirror the repository is never asked for it.
        if (filtered && !other.admits(repositoryOn(other, name))) continue;
        const t = { upstream: other.upstream, repository: repositoryOn(other, name) };
        digestFallbacks.push(t);
        if (group.tags?.(repository)) tagFallbacks.push(t);
      }
    }
    return {
      upstream: entry.upstream,
      repository,
      ...(digestFallbacks.length ? { digestFallbacks } : {}),
      ...(tagFallbacks.length ? { tagFallbacks } : {}),
    };
  }

  return {
    defaultUpstream: fallback.upstream,
    resolve(name, ns, { filtered = true } = {}) {
      if (ns !== undefined) {
        const entry = hosts.get(ns.toLowerCase());
        if (!entry) {
          throw new OciError('NAME_UNKNOWN', `registry "${ns.slice(0, 100)}" is not mirrored here`, { status: 404 });
        }
        return target(entry, name, filtered);
      }
      const slash = name.indexOf('/');
      if (slash > 0) {
        const entry = hosts.get(name.slice(0, slash));
        if (entry) return target(entry, name.slice(slash + 1), filtered);
      }
      return target(fallback, name, filtered);
    },
  };
}
