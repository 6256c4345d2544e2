/**
 * The package root: the mirror and its server, the config, the errors, the storage contract and
 * the middlewares with what composing them by hand needs. Operations live on subpaths:
 * `koa-oci-mirror/admin` (warm-up, ls, purge, gc), `koa-oci-mirror/eviction`,
 * `koa-oci-mirror/status`; each middleware and adapter on `koa-oci-mirror/middleware/<name>`
 * and `koa-oci-mirror/adapters/<name>`.
 */
export { createMirror, createStorage, createUpstreams, type Mirror, type MirrorOptions } from '../middleware/mirror/index.js';
export { startServer, type MirrorServer, type ServerOptions } from './server.js';
export { ConfigError, configSchema, loadConfigFile, parseConfig, type MirrorConfig, type MirrorConfigInput, type UpstreamConfig } from './config.js';
export { ErrorCodes, OciError, isOciError, type ErrorCode, type OciErrorOptions } from './errors.js';
export type { Digest, DigestAlgorithm, ManifestReference } from './reference.js';
export type { BlobInfo, BlobPutOptions, BlobReadOptions, BlobStore, MetadataStore, SpoolCapability, Storage } from './storage.js';
export type { OciRoute, UpstreamTarget } from './state.js';
export type { Secret } from './secrets.js';
export type { SecretReload } from './secret-file.js';
export type { Upstream, UpstreamCredentials, UpstreamOptions, UpstreamRequest, UpstreamResponse, UpstreamTimeouts } from './upstream/types.js';
export { createUpstream } from './upstream/index.js';
export { createFills, type Fills, type FillsOptions } from './fill/index.js';
export { Links, type LinkedRoute, type LinksOptions } from './access/links.js';
export { MirrorEvents, type CacheEvent, type CacheResult, type MirrorEventMap } from './events/index.js';
export { fsStorage } from '../adapters/fs/index.js';
export { ociErrors, type OciErrorsOptions } from '../middleware/oci-errors/index.js';
export { ociRequest, type OciRequestOptions } from '../middleware/oci-request/index.js';
export { upstreamSelect, type FallbackGroup, type UpstreamSelectOptions } from '../middleware/upstream-select/index.js';
export { manifestCache } from '../middleware/manifest-cache/index.js';
export { blobCache, type BlobCacheOptions } from '../middleware/blob-cache/index.js';
export { ListCache, listProxy, type ListCacheOptions, type ListProxyOptions } from '../middleware/list-proxy/index.js';
export { metricsEndpoint, type MetricsEndpointOptions } from '../middleware/metrics-endpoint/index.js';
export { statusPage, type StatusPageOptions } from '../middleware/status-page/index.js';
export { requestLog, requestLogger, type RequestLoggerOptions } from '../middleware/request-logger/index.js';
export { adminApi, type AdminApiOptions } from '../middleware/admin-api/index.js';
