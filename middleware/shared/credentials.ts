/** Reading a client's `Authorization` header; nothing here trusts what it reads. */
import { OciError } from '../../src/errors.js';
import type { UpstreamCredentials } from '../../src/upstream/types.js';

export type Presented = { scheme: 'basic'; credentials: UpstreamCredentials } | { scheme: 'bearer'; token: string } | undefined;

/** Longer than any real credential; refuses to decode (or hash) megabytes of header. */
const MAX_AUTHORIZATION = 8192;

export function presented(header: string | undefined): Presented {
  if (!header || header.length > MAX_AUTHORIZATION) return undefined;
  const m = /^(\w+) +(\S+) *$/.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'bearer') return { scheme: 'bearer', token: m[2]! };
  if (scheme !== 'basic') return undefined;
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { scheme: 'basic', credentials: { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) } };
}

/** The challenge clients answer by sending Basic credentials (docker login, skopeo --creds, containerd auths). */
export const BASIC_CHALLENGE = 'Basic realm="oci-mirror", charset="UTF-8"';

/** 401 with the Basic challenge, for the mirror's own login and for an upstream's. */
export const unauthorized = (message: string): OciError => new OciError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': BASIC_CHALLENGE } });
