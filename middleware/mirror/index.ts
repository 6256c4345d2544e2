/**
 * `createMirror(config)`: the middlewares assembled into one koa middleware that answers
 * `/v2/…` and passes every other path on, so it mounts beside an application's own routes.
 */
import type { Middleware } from 'koa';
import compose from 'koa-compose';
import { clientIdentifier, mirrorAuth, type IdentifyClient } from '../mirror-auth/index.js';
import { clientToken, htpasswdFrom, upstreamCredentials, upstreamToken, type OnSecretReload } from './config-files.js';
import { upstreamAccess } from '../upstream-access/index.js';
import { blobCache, type BlobRedirectOptions } from '../blob-cache/index.js';
import { ociErrors, type OciErrorsOptions } from '../oci-errors/index.js';
import { listProxy } from '../list-proxy/index.js';
import { manifestCache } from '../manifest-cache/index.js';
import { ManifestCache } from '../../src/manifests/cache.js';
import { ListCache } from '../../src/lists/cache.js';
import { fillRelay } from '../fill-relay/index.js';
import { ociRequest } from '../oci-request/index.js';
import { upstreamSelect } from '../upstream-select/index.js';
import { createRouting, type Routing, type RoutingOptions } from '../../src/upstream/routing.js';
import { Links } from '../../src/access/links.js';
import { isProtected } from '../../src/access/rules.js';
import type { MirrorConfig } from '../../src/config.js';
import { MirrorEvents, observeFills, observeUpstream } from '../../src/events/index.js';
import { onResponseEnd } from '../shared/response-end.js';
import { evictionFromConfig, type Eviction, type EvictionTurns } from '../../src/eviction/index.js';
import { prefetchPlatforms, type Prefetcher } from '../../src/admin/prefetch.js';
import type { WarmDeps } from '../../src/admin/warm.js';
import { createFills, type Fills } from '../../src/fill/index.js';
import { FILLS_PATH, replicationFromConfig, type Replication } from '../../src/replication/index.js';
import type { Storage } from '../../src/storage.js';
import { memoStorage } from '../../src/memo/storage.js';
import { tagRecordExpiry } from '../../src/manifests/keys.js';
import { blobRedirect, createStorage, liveFillAge, recoverStorage } from '../../src/storage-config.js';
import { createFailoverUpstream, type FailoverUpstream } from '../../src/upstream/failover.js';
import type { RateLimitOptions } from '../../src/upstream/rate-limit.js';
import { readUpstreamTls } from '../../src/upstream/trust.js';
import type { Upstream } from '../../src/upstream/types.js';

export interface MirrorOptions {
  /** Storage to use instead of the one the config describes (a custom adapter, say). */
  storage?: Storage;
  /** Upstreams to use instead of the ones the config describes. */
  upstreams?: Upstream[];
  onError?: OciErrorsOptions['onError'];
  /** Told when work in the background (eviction) fails; it is tried again later. */
  onBackgroundError?: (err: unknown, task: string) => void;
  /** Told when a secret file changed (passwordFile, tokenFile, auth.htpasswd): taken, or kept at its last good content and why. */
  onSecretReload?: OnSecretReload;
  /**
   * `false`: no start-up recovery of storage and no eviction, for short-lived tools (`oci-mirror
   * warm`, `ls`, `purge`) that may share the storage with a running server, whose fills in
   * progress recovery would remove. Default true.
   */
  maintenance?: boolean;
  /**
   * `false`: no start-up recovery of storage, because another process ran it and shares the
   * storage now (a cluster worker: its primary). Default: as `maintenance`.
   */
  recover?: boolean;
  /** Coordination with the processes sharing the storage, instead of the config's `replication` (a cluster worker's siblings). */
  replication?: Replication;
}

export interface Mirror extends Middleware {
  readonly config: MirrorConfig;
  readonly storage: Storage;
  readonly upstreams: Upstream[];
  readonly fills: Fills;
  readonly manifests: ManifestCache;
  /** Which routes may serve which cached digests (see src/access/links.ts). */
  readonly links: Links;
  /** Which upstream serves a name, and under what repository: the rules requests are routed by. */
  readonly routing: Routing;
  /** What this mirror does, for metrics, logs and eviction; its own, never shared with another mirror. */
  readonly events: MirrorEvents;
  /** Present when `cache.maxBytes` or `cache.ttl` is set. */
  readonly eviction: Eviction | undefined;
  /** With replication: whose turn it is to evict (`oci-mirror gc` waits for none, it takes one). */
  readonly evictionTurns: EvictionTurns | undefined;
  /**
   * Who a client is, when the config protects the mirror (`auth.htpasswd`, `auth.tokens`): for
   * routes of your own beside it that should ask for the same credentials (`requireClient`).
   */
  readonly identify: IdentifyClient | undefined;
  /** Start-up recovery of storage (temporary data a killed process left behind). */
  readonly ready: Promise<void>;
  /** Lets fills in flight finish for up to `graceMs`, then aborts them. */
  drain(graceMs?: number): Promise<void>;
  /** Drains, then releases upstream connections and storage. */
  close(graceMs?: number): Promise<void>;
}

export { createStorage };

export function createUpstreams(
  config: MirrorConfig['upstreams'],
  { onBackoff, onSecretReload }: Pick<RateLimitOptions, 'onBackoff'> & { onSecretReload?: OnSecretReload } = {},
): FailoverUpstream[] {
  return config.map((u) =>
    createFailoverUpstream({
      name: u.name,
      urls: u.urls,
      credentials: upstreamCredentials(u, onSecretReload),
      token: upstreamToken(u, onSecretReload),
      timeouts: u.timeouts,
      connections: u.connections,
      proxy: u.proxy,
      tls: readUpstreamTls(u.tls, `upstreams[${u.name}].tls`),
      health: u.health,
      rateLimit: { onBackoff, ...u.rateLimit },
    }),
  );
}

/** How the mirror recognizes its clients, when the config protects it. */
function identityFrom(config: MirrorConfig, onSecretReload: OnSecretReload | undefined): IdentifyClient | undefined {
  const { auth } = config;
  if (!isProtected(auth)) return undefined;
  return clientIdentifier({
    htpasswd: htpasswdFrom(auth, onSecretReload),
    tokens: auth.tokens.map((t, i) => ({ name: t.name, token: clientToken(auth, i, onSecretReload) })),
  });
}

/** The mirror's own client authentication, when the config asks for any. */
function mirrorAuthFrom(config: MirrorConfig, identify: IdentifyClient | undefined): Middleware | undefined {
  if (!identify) return undefined;
  const { auth } = config;
  const forwarding = new Set(config.upstreams.filter((u) => u.forwardCredentials).map((u) => u.name));
  return mirrorAuth({
    identify,
    anonymous: auth.anonymous,
    rules: auth.rules,
    // Clients of a forwarding upstream authenticate to that upstream, which decides.
    exempt: (target) => forwarding.has(target.upstream.name),
  });
}

/** Blob redirects as the storage config asks, never for an upstream with access rules. */
function redirectFrom(config: MirrorConfig): BlobRedirectOptions | undefined {
  const redirect = blobRedirect(config.storage);
  if (!redirect) return undefined;
  const gated = new Set(config.upstreams.filter((u) => u.private || u.forwardCredentials).map((u) => u.name));
  return { expiresIn: redirect.expiresIn, skip: (target) => gated.has(target.upstream.name) };
}

/** Upstreams by name, with the routing the config gives them (aliases, default); injected ones route by name, first is default. */
function routingFrom(config: MirrorConfig, upstreams: Upstream[], events: MirrorEvents): Routing {
  const routes: RoutingOptions = {
    upstreams: upstreams.map((upstream) => {
      const u = config.upstreams.find((c) => c.name === upstream.name);
      return { upstream: observeUpstream(upstream, events), aliases: u?.aliases, default: u?.default, allow: u?.allow, deny: u?.deny };
    }),
    fallbackGroups: config.fallbackGroups,
  };
  return createRouting(routes);
}

/** The work a long-running mirror does beside its requests: eviction and platform prefetch. */
function backgroundFrom(
  config: MirrorConfig,
  parts: WarmDeps,
  { ready, turns, onError }: { ready: Promise<void>; turns: EvictionTurns | undefined; onError: MirrorOptions['onBackgroundError'] },
): { eviction?: Eviction; prefetch?: Prefetcher } {
  const { storage, events, fills } = parts;
  const eviction = evictionFromConfig(config.cache, { storage, events, fills, after: ready, turns, onError: (err) => onError?.(err, 'eviction') });
  const prefetch = config.cache.prefetchPlatforms
    ? prefetchPlatforms(parts, {
        maxManifestBytes: config.cache.maxManifestBytes,
        skip: new Set(config.upstreams.filter((u) => u.forwardCredentials).map((u) => u.name)),
        onError: (err) => onError?.(err, 'prefetch'),
      })
    : undefined;
  return { eviction, prefetch };
}

interface ChainParts {
  routing: Routing;
  identify: IdentifyClient | undefined;
  manifests: ManifestCache;
  links: Links;
  fills: Fills;
  storage: Storage;
  events: MirrorEvents;
}

/** The order of the middlewares, in one place. */
function chainFrom(config: MirrorConfig, { routing, identify, manifests, links, fills, storage, events }: ChainParts, options: MirrorOptions): Middleware {
  const protect = mirrorAuthFrom(config, identify);
  // Looked up on every request: a map, not a scan of the config.
  const policies = new Map(config.upstreams.map((u) => [u.name, { forwardCredentials: u.forwardCredentials, private: u.private }]));
  return compose([
    ociErrors({ onError: options.onError }),
    ociRequest(),
    upstreamSelect({ routing }),
    ...(protect ? [protect] : []),
    upstreamAccess({
      policy: (name) => policies.get(name),
      ttl: config.auth.accessTtl,
      challengeAtBase: config.upstreams.some((u) => u.forwardCredentials || u.private),
    }),
    manifestCache({ cache: manifests, events }),
    blobCache({ blobs: storage.blobs, fills, links, events, redirect: redirectFrom(config) }),
    listProxy({ cache: new ListCache({ meta: storage.meta, ttl: config.cache.tagTtl }), events }),
  ]);
}

export function createMirror(config: MirrorConfig, options: MirrorOptions = {}): Mirror {
  const replication = options.replication ?? (config.replication && replicationFromConfig(config.replication));
  // Replicas share the storage: start-up recovery must leave the others' fills in flight alone.
  const stored = options.storage ?? createStorage(config.storage, { recoverOlderThan: replication ? liveFillAge(config.fill.timeout) : 0 });
  // Everything below reads and writes through the memo, so that its deletes reach it too.
  const { tagTtl, memoBytes } = config.cache;
  const storage = memoStorage(stored, { budget: memoBytes, maxAge: tagTtl, expiresAt: tagRecordExpiry(tagTtl) });
  const events = new MirrorEvents();
  const upstreams =
    options.upstreams ?? createUpstreams(config.upstreams, { onBackoff: (e) => events.emit('upstream:backoff', e), onSecretReload: options.onSecretReload });
  const fills = createFills({
    store: storage.blobs,
    timeout: config.fill.timeout,
    spoolDir: config.fill.spoolDir,
    maxBlobBytes: config.fill.maxBlobBytes,
    reserveBytes: config.fill.reserveBytes,
    onFill: observeFills(events),
    coordination: replication?.coordination,
  });
  const relayEndpoint = replication && fillRelay({ fills, blobs: storage.blobs, secret: replication.secret });
  const links = new Links(storage.meta);
  // Eviction and purge remove a digest's links with its content; the memory of them goes too.
  events.on('eviction', (e) => links.removed(e.digest));
  const manifests = new ManifestCache({
    blobs: storage.blobs,
    meta: storage.meta,
    links,
    tagTtl: config.cache.tagTtl,
    negativeTtl: config.cache.negativeTtl,
    maxManifestBytes: config.cache.maxManifestBytes,
  });
  const maintenance = options.maintenance ?? true;
  const ready = (options.recover ?? maintenance) ? recoverStorage(storage) : Promise.resolve();
  ready.catch(() => {});
  const routing = routingFrom(config, upstreams, events);
  const { eviction, prefetch } = maintenance
    ? backgroundFrom(config, { routing, manifests, links, fills, storage, events }, { ready, turns: replication?.evictionTurns, onError: options.onBackgroundError })
    : {};

  const identify = identityFrom(config, options.onSecretReload);
  const chain = chainFrom(config, { routing, identify, manifests, links, fills, storage, events }, options);
  const unhandled = async () => {
    // Every /v2/ route is claimed above; reaching here means a custom chain dropped one.
  };

  // Once storage is ready, requests skip the await: a settled promise still costs a microtask each.
  let isReady = false;
  ready.then(
    () => (isReady = true),
    () => {},
  );
  const mirror = async function mirror(ctx, next) {
    if (relayEndpoint && ctx.path.startsWith(FILLS_PATH)) return relayEndpoint(ctx, next);
    if (ctx.path !== '/v2' && !ctx.path.startsWith('/v2/')) return next();
    onResponseEnd(ctx, (end) =>
      events.emit('request', {
        route: ctx.state.oci?.kind ?? 'invalid',
        method: ctx.method,
        status: end.status,
        bytes: end.bytes,
        complete: end.complete,
        durationMs: end.durationMs,
      }),
    );
    if (!isReady) await ready;
    return chain(ctx, unhandled);
  } as Middleware;

  let closing: Promise<void> | undefined;
  return Object.assign(mirror, {
    config,
    storage,
    upstreams,
    fills,
    manifests,
    links,
    routing,
    events,
    eviction,
    evictionTurns: replication?.evictionTurns,
    identify,
    ready,
    drain: (graceMs = config.shutdownGrace) => fills.drain(graceMs),
    close(graceMs = config.shutdownGrace) {
      closing ??= (async () => {
        prefetch?.stop();
        await fills.drain(graceMs);
        await eviction?.close();
        await replication?.close();
        await Promise.allSettled(upstreams.map((u) => u.close()));
        await Promise.allSettled([storage.blobs.close?.(), storage.meta.close?.()]);
      })();
      return closing;
    },
  });
}

