/**
 * Image references as operators type them: `name[:tag|@digest]`, where the name may start
 * with a registry (`ghcr.io/org/app:1.0`) that is routed the way the server routes a path
 * prefix, and platforms as `os/arch[/variant]`.
 */
import type { Platform } from '../manifests/parse.js';
import type { ResolveOptions, Routing } from '../upstream/routing.js';
import { OciError } from '../errors.js';
import { assertName, parseManifestReference, type ManifestReference } from '../reference.js';
import type { UpstreamTarget } from '../state.js';

export interface ImageRef {
  /** What the operator typed, for messages. */
  text: string;
  target: UpstreamTarget;
  reference: ManifestReference;
}

/** Splits `name[:tag|@digest]`; the tag is undefined when none is given. */
export function splitReference(text: string): { name: string; tag?: string; digest?: string } {
  const at = text.indexOf('@');
  if (at >= 0) return { name: text.slice(0, at), digest: text.slice(at + 1) };
  // A colon after the last slash starts the tag; one before it is a registry's port.
  const colon = text.lastIndexOf(':');
  if (colon > text.lastIndexOf('/')) return { name: text.slice(0, colon), tag: text.slice(colon + 1) };
  return { name: text };
}

/** Resolves an image reference; the tag defaults to `latest`. Throws an OciError for a malformed one. */
export function resolveImage(routing: Routing, text: string): ImageRef {
  const { name, tag, digest } = splitReference(text.trim());
  const target = resolveName(routing, name);
  return { text, target, reference: parseManifestReference(digest ?? tag ?? 'latest') };
}

/** Resolves a repository name (with an optional registry prefix) to its upstream and repository. */
export function resolveName(routing: Routing, name: string, options?: ResolveOptions): UpstreamTarget {
  if (!name) throw new OciError('NAME_INVALID', 'no repository name given');
  const target = routing.resolve(name, undefined, options);
  assertName(target.repository);
  return target;
}


export type { Platform };

/** `linux/arm64` or `linux/arm/v7`. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/i.test(p))) {
    throw new OciError('UNSUPPORTED', `"${text.slice(0, 80)}" is not a platform (use os/arch or os/arch/variant, e.g. linux/arm64)`, {
      status: 400,
    });
  }
  const [os, architecture, variant] = parts as [string, string, string?];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: Partial<Platform> | undefined): string {
  if (!p?.os || !p.architecture) return 'unknown';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Whether a descriptor's platform is one of `wanted`; a wanted platform without a variant takes any variant. */
export function platformMatches(p: Partial<Platform> | undefined, wanted: readonly Platform[]): boolean {
  return wanted.some((w) => p?.os === w.os && p.architecture === w.architecture && (w.variant === undefined || p.variant === w.variant));
}
