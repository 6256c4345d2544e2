/**
 * The OCI distribution spec's grammar for repository names, tags and digests.
 * Everything a client sends passes through here before it reaches storage or an upstream,
 * so these are also the path-traversal and injection guards.
 */
import { OciError } from './errors.js';

const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** Clients commonly cap host + "/" + name at 255 characters; a name alone never needs more. */
export const MAX_NAME_LENGTH = 255;

export const DigestAlgorithms = {
  sha256: { hex: 64 },
  sha512: { hex: 128 },
} as const;
export type DigestAlgorithm = keyof typeof DigestAlgorithms;

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** The canonical `algorithm:hex` form. */
  value: string;
}

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export function assertName(name: string): string {
  if (!isValidName(name)) {
    throw new OciError('NAME_INVALID', `invalid repository name: ${truncate(name)}`);
  }
  return name;
}

export function assertTag(tag: string): string {
  if (!isValidTag(tag)) throw new OciError('TAG_INVALID', `invalid tag: ${truncate(tag)}`);
  return tag;
}

/** Parses and checks a digest; only algorithms we can verify are accepted. */
export function parseDigest(value: string): Digest {
  if (!DIGEST_RE.test(value)) throw new OciError('DIGEST_INVALID', `invalid digest: ${truncate(value)}`);
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (!(algorithm in DigestAlgorithms)) {
    throw new OciError('DIGEST_INVALID', `unsupported digest algorithm: ${truncate(algorithm)}`);
  }
  const alg = algorithm as DigestAlgorithm;
  if (hex.length !== DigestAlgorithms[alg].hex || !/^[a-f0-9]+$/.test(hex)) {
    throw new OciError('DIGEST_INVALID', `invalid ${alg} digest: ${truncate(value)}`);
  }
  return { algorithm: alg, hex, value };
}

export function isDigest(reference: string): boolean {
  return reference.includes(':');
}

/** A manifest reference is a tag or a digest; anything else is refused. */
export type ManifestReference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseManifestReference(reference: string): ManifestReference {
  if (isDigest(reference)) return { kind: 'digest', digest: parseDigest(reference) };
  if (isValidTag(reference)) return { kind: 'tag', tag: reference };
  // The spec names no dedicated code for a malformed reference; distribution answers TAG_INVALID.
  throw new OciError('TAG_INVALID', `invalid reference: ${truncate(reference)}`);
}

function truncate(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

export function isValidDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}
