/**
 * Resolves the request to an upstream and the repository name as that upstream knows it.
 * One upstream for now; the `resolve` option is the seam where routing by `?ns=`, by name
 * prefix and by fallback plugs in.
 */
import type { Middleware, ParameterizedContext } from 'koa';
import { OciError } from '../../src/errors.js';
import type { UpstreamTarget } from '../../src/state.js';
import type { Upstream } from '../../src/upstream/types.js';
import '../../src/state.js';

export interface UpstreamSelectOptions {
  upstreams: Upstream[];
  /** Overrides the default choice (the first upstream). Return undefined to refuse the request. */
  resolve?: (name: string, ctx: ParameterizedContext) => UpstreamTarget | undefined;
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** Docker Hub keeps official images under `library/`; clients may leave that out. */
export function upstreamRepository(upstream: Upstream, name: string): string {
  return DOCKER_HUB.has(upstream.name) && !name.includes('/') ? `library/${name}` : name;
}

export const upstreamSelect = ({ upstreams, resolve }: UpstreamSelectOptions): Middleware =>
  async function upstreamSelect(ctx, next) {
    const route = ctx.state.oci;
    if (!route || route.kind === 'base') return next();
    const target = resolve
      ? resolve(route.name, ctx)
      : upstreams[0] && { upstream: upstreams[0], repository: upstreamRepository(upstreams[0], route.name) };
    if (!target) throw new OciError('NAME_UNKNOWN', `no upstream serves ${route.name}`);
    ctx.state.target = target;
    return next();
  };

/** The target a handler needs; a composition without upstreamSelect is a programming error. */
export function requireTarget(ctx: ParameterizedContext): UpstreamTarget {
  const target = ctx.state.target;
  if (!target) throw new Error('upstreamSelect must run before this middleware');
  return target;
}
