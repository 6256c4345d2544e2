export { createUpstream } from './client.js';
export { upstreamError } from './errors.js';
export type { UpstreamErrorDetail } from './errors.js';
export { parseWwwAuthenticate } from './www-authenticate.js';
export type { Challenge } from './www-authenticate.js';
export type {
  Upstream,
  UpstreamCredentials,
  UpstreamOptions,
  UpstreamRequest,
  UpstreamResponse,
  UpstreamTimeouts,
} from './types.js';
