/**
 * One upstream reached at several URLs (a primary and its mirrors), tried in order, each
 * with its own pool, token cache and health. A URL that fails to answer at all (refused,
 * reset, timed out) counts against its health; one that answers 5xx is passed over for this
 * request only, since an HTTP answer proves the URL is alive.
 */
import { OciError, isOciError } from '../errors.js';
import { discard } from './body.js';
import { createUpstream } from './client.js';
import { Health, type HealthOptions, type HealthSnapshot } from './health.js';
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
  const members = urls.map((url) => ({ url, upstream: create({ ...rest, url }), health: new Health(healthOptions) }));

  async function request(req: UpstreamRequest): Promise<UpstreamResponse> {
    let lastError: unknown;
    let attempted = false;
    for (const [i, member] of members.entries()) {
      if (!member.health.acquire()) continue;
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
    if (!attempted) {
      const retryAt = Math.min(...members.map((m) => m.health.snapshot().retryAt ?? Infinity));
      const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      throw new OciError('UNAVAILABLE', `upstream ${options.name} is out of rotation after failures; next try in ${seconds}s`);
    }
    throw lastError;
  }

  return {
    name: options.name,
    url: urls[0]!,
    urls,
    request,
    health: () => members.map((m) => ({ url: m.url, ...m.health.snapshot() })),
    async close() {
      await Promise.allSettled(members.map((m) => m.upstream.close()));
    },
  };
}
