/**
 * Resolves the request to an upstream and the repository name as that upstream knows it
 * (see routing.ts for the rules), and puts it in `ctx.state.target`.
 */
import type { Middleware, ParameterizedContext } from 'koa';
import { OciError } from '../../src/errors.js';
import type { UpstreamTarget } from '../../src/state.js';
import '../shared/state.js';
import { createRouting, type Routing, type RoutingOptions } from '../../src/upstream/routing.js';

export { createRouting, DOCKER_HUB_HOSTS, type FallbackGroup, type ResolveOptions, type Routing, type RoutingOptions, type UpstreamRoute } from '../../src/upstream/routing.js';

export type UpstreamSelectOptions =
  | RoutingOptions
  /** Routing built already (createMirror builds it once and shares it with warm-up and admin). */
  | { routing: Routing }
  /** Replaces the built-in rules. Return undefined to refuse the request. */
  | { resolve: (name: string, ctx: ParameterizedContext) => UpstreamTarget | undefined };

export const upstreamSelect = (options: UpstreamSelectOptions): Middleware => {
  const resolve = 'resolve' in options ? options.resolve : undefined;
  const routes = 'resolve' in options ? undefined : 'routing' in options ? options.routing : createRouting(options);
  return async function upstreamSelect(ctx, next) {
    const route = ctx.state.oci;
    if (!route || route.kind === 'base') return next();
    let target: UpstreamTarget | undefined;
    if (resolve) {
      target = resolve(route.name, ctx);
    } else {
      const ns = ctx.query.ns;
      if (Array.isArray(ns)) throw new OciError('NAME_UNKNOWN', 'ns given more than once', { status: 400 });
      target = routes!.resolve(route.name, ns);
    }
    if (!target) throw new OciError('NAME_UNKNOWN', `no upstream serves ${route.name}`);
    ctx.state.target = target;
    return next();
  };
};

/** The target a handler needs; a composition without upstreamSelect is a programming error. */
export function requireTarget(ctx: ParameterizedContext): UpstreamTarget {
  const target = ctx.state.target;
  if (!target) throw new Error('upstreamSelect must run before this middleware');
  return target;
}
