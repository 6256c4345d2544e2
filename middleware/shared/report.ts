/**
 * The one call a content middleware makes once it knows how it will answer: a `cache` event
 * now (observers pin the object from here: eviction must not remove what is being served)
 * and a `served` event when the response has ended (bytes, completion, duration).
 */
import type { ParameterizedContext } from 'koa';
import type { UpstreamTarget } from '../../src/state.js';
import type { CacheEvent, CacheResult, ContentKind, MirrorEvents } from '../../src/events/index.js';
import { onResponseEnd } from './response-end.js';

export interface CacheReport {
  kind: ContentKind;
  result: CacheResult;
  target: UpstreamTarget;
  digest: string;
  size?: number;
}

export function reportCache(ctx: ParameterizedContext, events: MirrorEvents | undefined, report: CacheReport): void {
  if (!events) return;
  // Both events spelled out, not `{ target, ...rest }` and `{ ...event, ...end }`: see
  // eslint.config.js, which has what those cost here (the `served` spread also some 50 MB of peak
  // heap under wrk).
  const event: CacheEvent = {
    kind: report.kind,
    result: report.result,
    upstream: report.target.upstream.name,
    repository: report.target.repository,
    digest: report.digest,
    method: ctx.method,
    size: report.size,
  };
  events.emit('cache', event);
  onResponseEnd(ctx, (end) =>
    events.emit('served', {
      kind: event.kind,
      result: event.result,
      upstream: event.upstream,
      repository: event.repository,
      digest: event.digest,
      method: event.method,
      size: event.size,
      status: end.status,
      bytes: end.bytes,
      complete: end.complete,
      durationMs: end.durationMs,
    }),
  );
}
