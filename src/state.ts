/**
 * What a request is, once parsed and routed: the route, the upstream target and the client.
 * The middlewares carry them on `ctx.state` (typed in middleware/shared/state.ts).
 */
import type { Digest, ManifestReference } from './reference.js';
import type { Upstream, UpstreamCredentials } from './upstream/types.js';

export type OciRoute =
  | { kind: 'base' }
  | { kind: 'manifest'; name: string; reference: ManifestReference }
  | { kind: 'blob'; name: string; digest: Digest }
  | { kind: 'tags'; name: string; n?: number; last?: string }
  | { kind: 'referrers'; name: string; digest: Digest; artifactType?: string };

export interface UpstreamTarget {
  upstream: Upstream;
  /** The repository name as the upstream knows it (e.g. `library/alpine` for Docker Hub's `alpine`). */
  repository: string;
  /**
   * Other upstreams that may serve content addressed by digest (verified anyway), in order,
   * after this one.
   */
  digestFallbacks?: UpstreamTarget[];
  /**
   * Other upstreams that may resolve tags of this repository, in order, after this one. Only
   * where the config allows it for the name: tag squatting on a fallback is a real attack.
   */
  tagFallbacks?: UpstreamTarget[];
  /** The client's own credentials, forwarded to this upstream only (set by `upstreamAccess`). */
  credentials?: UpstreamCredentials;
}

/** Who is asking, as far as the mirror could tell from the `Authorization` header. */
export interface ClientIdentity {
  /** The user or token name the mirror verified; undefined when it verified nobody. */
  name?: string;
  /** Basic credentials as the client sent them, for forwarding to an upstream that asks for them. */
  basic?: UpstreamCredentials;
}
