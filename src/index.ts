export { createMirror, createStorage, createUpstreams, type Mirror, type MirrorOptions } from './mirror.js';
export { startServer, type MirrorServer, type ServerOptions } from './server.js';
export { ConfigError, configSchema, loadConfigFile, parseConfig, type MirrorConfig, type MirrorConfigInput, type UpstreamConfig } from './config.js';
export { ErrorCodes, OciError, isOciError, type ErrorCode, type OciErrorOptions } from './errors.js';
export { assertName, assertTag, isValidName, isValidTag, parseDigest, parseManifestReference, type Digest, type DigestAlgorithm, type ManifestReference } from './reference.js';
export { DigestVerifier, digestOf, verifyingStream } from './digest.js';
export { MediaTypes, MANIFEST_ACCEPT } from './media-types.js';
export { createFills, Fill, type Fills, type FillsOptions, type FillSource, type FillSourceResponse, type FillState } from './fill/index.js';
export type { BlobInfo, BlobPutOptions, BlobReadOptions, BlobStore, MetadataStore, SpoolCapability, Storage } from './storage.js';
export type { OciRoute, UpstreamTarget } from './state.js';
export { Links, type LinkedRoute, type LinksOptions } from './access/links.js';
export { createFailoverUpstream, createUpstream, firstAnswer, Health, type FailoverUpstream, type FailoverUpstreamOptions, type HealthOptions } from './upstream/index.js';
export type { Upstream, UpstreamCredentials, UpstreamOptions, UpstreamRequest, UpstreamResponse, UpstreamTimeouts } from './upstream/types.js';
export { ociErrors, type OciErrorsOptions } from '../middleware/errors/index.js';
export { ociRequest, type OciRequestOptions } from '../middleware/request/index.js';
export { createRouting, upstreamSelect, type FallbackGroup, type Routing, type UpstreamRoute, type UpstreamSelectOptions } from '../middleware/upstream/index.js';
export { manifestCache, ManifestCache, type ManifestCacheOptions } from '../middleware/manifests/index.js';
export { blobCache, type BlobCacheOptions } from '../middleware/blobs/index.js';
export { listProxy, type ListProxyOptions } from '../middleware/lists/index.js';
export { fsStorage, fsBlobStore, fsMetadataStore } from '../adapters/fs/index.js';
export {
  MirrorEvents,
  type CacheEvent,
  type CacheResult,
  type EvictionEvent,
  type FillEndEvent,
  type FillStartEvent,
  type MirrorEventMap,
  type RequestEvent,
  type ServedEvent,
  type UpstreamEvent,
} from './events/index.js';
export { createMetrics, type Metrics, type MetricsOptions, type MetricsSource } from './metrics/index.js';
export { createLogger, redact, REDACT_PATHS, type LoggerSetup } from './logging/index.js';
export { createReadiness, type Readiness, type ReadinessOptions, type ReadinessReport } from './health/index.js';
export { createEviction, planEviction, type Eviction, type EvictionOptions, type EvictionPass } from './eviction/index.js';
export { metricsEndpoint, type MetricsEndpointOptions } from '../middleware/metrics/index.js';
export { statusPage, type StatusPageOptions } from '../middleware/status/index.js';
export { createStatus, type Status, type StatusOptions, type StatusSnapshot, type StatusSource } from './status/index.js';
export { requestLog, requestLogger, type RequestLoggerOptions } from '../middleware/logging/index.js';
export {
  adminApi,
  gc,
  listCached,
  purge,
  warmImage,
  warmImages,
  type AdminApiOptions,
  type CachedImage,
  type GcResult,
  type PurgeResult,
  type WarmEvent,
  type WarmOptions,
  type WarmReport,
  type WarmResult,
} from './admin/index.js';
