/**
 * Readiness for load balancers and Kubernetes: the mirror is ready when its storage takes a
 * write (a probe blob and a probe record, written and deleted through the adapters' own
 * interfaces, so any store is checked the same way). Upstream health is reported alongside
 * but never makes the mirror unready: a mirror whose upstream is down still serves its cache.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestOf } from '../digest.js';
import type { Storage } from '../storage.js';
import type { HealthSnapshot } from '../upstream/health.js';
import type { Upstream } from '../upstream/types.js';

export interface UpstreamHealthSummary {
  name: string;
  /** `degraded`: some URLs are out of rotation; `unknown`: the upstream does not track health. */
  state: 'up' | 'degraded' | 'down' | 'unknown';
  urls?: Array<{ url: string } & HealthSnapshot>;
}

export interface ReadinessReport {
  ready: boolean;
  storage: { writable: boolean; error?: string; durationMs: number };
  upstreams: UpstreamHealthSummary[];
}

export interface ReadinessOptions {
  /** A probe slower than this counts as a failure, ms. */
  timeout?: number;
  /** Probe results are reused this long, so a storm of probes costs one write, ms. */
  cacheFor?: number;
  /** Told the full error of a failed probe (the report carries only its code). */
  onProbeError?: (err: unknown) => void;
}

export interface Readiness {
  check(): Promise<ReadinessReport>;
}

/** Health-tracking upstreams (the failover ones) expose this; others report `unknown`. */
type WithHealth = Upstream & { health?: () => Array<{ url: string } & HealthSnapshot> };

export function createReadiness(
  mirror: { readonly storage: Storage; readonly upstreams: readonly Upstream[] },
  { timeout = 5000, cacheFor = 1000, onProbeError }: ReadinessOptions = {},
): Readiness {
  let last: { at: number; result: Promise<ReadinessReport['storage']> } | undefined;

  function storageProbe(): Promise<ReadinessReport['storage']> {
    const now = performance.now();
    if (!last || now - last.at >= cacheFor) last = { at: now, result: probeStorage(mirror.storage, timeout, onProbeError) };
    return last.result;
  }

  return {
    async check() {
      const storage = await storageProbe();
      return { ready: storage.writable, storage, upstreams: mirror.upstreams.map(summarize) };
    },
  };
}

async function probeStorage(storage: Storage, timeout: number, onError: ReadinessOptions['onProbeError']): Promise<ReadinessReport['storage']> {
  const started = performance.now();
  const abort = new AbortController();
  // Random bytes: a probe never shares a digest with real content, nor with another probe.
  const bytes = randomBytes(32);
  const digest = digestOf(bytes);
  const key = `probe/${randomUUID()}`;
  const work = (async () => {
    await storage.blobs.put(digest, Readable.from([bytes]), { size: bytes.length, signal: abort.signal });
    await storage.blobs.delete(digest);
    await storage.meta.set(key, { at: Date.now() });
    await storage.meta.delete(key);
  })();
  // A real timer, held until the probe settles (a bare AbortSignal.timeout can be collected).
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`storage probe took longer than ${timeout} ms`);
      abort.abort(err);
      reject(err);
    }, timeout);
  });
  try {
    await Promise.race([work, timedOut]);
    return { writable: true, durationMs: performance.now() - started };
  } catch (err) {
    work.catch(() => {});
    onError?.(err);
    return { writable: false, error: describe(err), durationMs: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** One upstream's health as /readyz reports it; the status page shows the same, so the two never disagree. */
export function summarize(upstream: WithHealth): UpstreamHealthSummary {
  if (typeof upstream.health !== 'function') return { name: upstream.name, state: 'unknown' };
  const urls = upstream.health().map((u) => ({ ...u, url: withoutCredentials(u.url) }));
  const up = urls.filter((u) => u.state === 'up').length;
  const state = up === urls.length ? 'up' : up === 0 ? 'down' : 'degraded';
  return { name: upstream.name, state, urls };
}

/** An origin may have been configured with `user:password@`; a health page is no place for it. */
function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/**
 * A code where the error has one (EACCES, ENOSPC), else a short message: this answer goes to
 * whoever asks, and a message may name paths or hosts. The full error is the caller's to log.
 */
function describe(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  const message = err instanceof Error ? err.message : String(err);
  return message.length > 120 ? `${message.slice(0, 119)}…` : message;
}
