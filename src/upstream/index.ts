export { createUpstream } from './client.js';
export { createFailoverUpstream, type FailoverUpstream, type FailoverUpstreamOptions } from './failover.js';
export { Health, type HealthOptions, type HealthSnapshot, type HealthState } from './health.js';
export { digestCandidates, firstAnswer } from './fallback.js';
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
