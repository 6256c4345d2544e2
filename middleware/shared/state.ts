/**
 * Request state shared by the middlewares, typed once by declaration merging so that every
 * middleware reads the same fields without casts. Import it for its effect.
 */
import type { ClientIdentity, OciRoute, UpstreamTarget } from '../../src/state.js';
import type {} from 'koa';

declare module 'koa' {
  interface DefaultState {
    /** Set by the `ociRequest` middleware for every `/v2/` request it accepts. */
    oci?: OciRoute;
    /** Set by the `upstreamSelect` middleware. */
    target?: UpstreamTarget;
    /** Set by the `mirrorAuth` middleware (or by `upstreamAccess` from the header when there is none). */
    client?: ClientIdentity;
  }
}

export {};
