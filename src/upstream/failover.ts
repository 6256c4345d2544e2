/**
 * One upstream reached at several URLs (a primary and its mirrors), tried in order, each
 * with its own pool, token cache and health. A URL that fails to answer at all (refused,
 * reset, timed out) counts against its health; one that answers 5xx is passed over for this
 * request only, since an HTTP answer proves the URL is alive. With no URL left in rotation,
 * each is probed again after `probeInterval` rather than `failTimeout` (see health.ts).
 */
import { OciError, isOciError } from '../errors.js';
import { discard } from './body.js';
import { createUpstream } from './client.js';
import { Health, type HealthOptions, type HealthSnapshot } from './health.js';
import { RateLimit } from './rate-limit.js';
import type { Upstream, UpstreamOptions, UpstreamRequest, UpstreamResponse } from './types.js';

export interface FailoverUpstreamOptions extends Omit<UpstreamOptions, 'url' | 'dispatcher'> {
  /** Tried in this order; at least one. */
  urls: readonly string[];
  health?: HealthOptions;
  /** Builds the client for one URL (tests inject dispatchers here). */
  create?: (options: UpstreamOptions) => Upstream;
}

export interface FailoverUpstream extends Upstream {
  readonly urls: readonly string[];
  /** Health of every URL, in order. */
  health(): Array<{ url: string } & HealthSnapshot>;
}

export function createFailoverUpstream(options: FailoverUpstreamOptions): FailoverUpstream {
  const { urls, health: healthOptions, create = createUpstream, ...rest } = options;
  if (urls.length === 0) throw new TypeError(`upstream ${options.name} needs at least one URL`);
  // One limit for all the URLs: a 429 from one says the upstream counts this client, whichever URL it used.
  const limits = rest.rateLimit instanceof RateLimit ? rest.rateLimit : new RateLimit(options.name, rest.rateLimit);
  const members = urls.map((url) => ({ url, upstream: create({ ...rest, rateLimit: limits, url }), health: new Health(healthOptions) }));
  const now = healthOptions?.now ?? Date.now;

  async function request(req: UpstreamRequest): Promise<UpstreamResponse> {
    let lastError: unknown;
    let attempted = false;
    // First the URLs in rotation (and those whose failTimeout is over); only when none of them
    // could be tried, the rest as the last resort they are.
    for (const lastResort of [false, true]) {
      for (const [i, member] of members.entries()) {
        if (!member.health.acquire(lastResort)) continue;
        attempted = true;
        let res: UpstreamResponse;
        try {
          res = await member.upstream.request(req);
        } catch (err) {
          if (req.signal?.aborted || !isOciError(err) || err.code !== 'UNAVAILABLE') {
            // Aborted by the caller, or refused on purpose (a foreign token realm): nothing to learn.
            member.health.release();
            throw err;
          }
          // 503 is "no answer at all"; a 502 (a broken redirect) is a bad answer from a live URL.
          if (err.status === 503) member.health.failure();
          else member.health.release();
          lastError = err;
          continue;
        }
        member.health.success();
        if (res.status >= 500 && i < members.length - 1) {
          await discard(res.body);
          lastError = new OciError('UNAVAILABLE', `upstream ${options.name} answered ${res.status}`, { status: 503 });
          continue;
        }
        return res;
      }
      if (attempted) break;
    }
    if (!attempted) {
      const retryAt = Math.min(...members.map((m) => m.health.retryAt(true)));
      const seconds = Math.max(0, Math.ceil((retryAt - now()) / 1000));
      throw new OciError('UNAVAILABLE', `upstream ${options.name} is out of rotation after failures; next try in ${seconds}s`);
    }
    throw lastError;
  }

  /** No URL serves without a probe: each one is the last resort. */
  const lastResort = () => members.every((m) => !m.health.inRotation);

  return {
    name: options.name,
    url: urls[0]!,
    urls,
    request,
    health: () => members.map((m) => ({ url: m.url, ...m.health.snapshot(lastResort()) })),
    rateLimit: () => limits.snapshot(),
    async close() {
      await Promise.allSettled(members.map((m) => m.upstream.close()));
    },
  };
}
