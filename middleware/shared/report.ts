/**
 * The one call a content middleware makes once it knows how it will answer: a `cache` event
 * now (observers pin the object from here: eviction must not remove what is being served)
 * and a `served` event when the response has ended (bytes, completion, duration).
 */
import type { ParameterizedContext } from 'koa';
import type { UpstreamTarget } from '../../src/state.js';
import type { CacheResult, ContentKind, MirrorEvents } from '../../src/events/index.js';
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
  const { target, ...rest } = report;
  const event = { ...rest, upstream: target.upstream.name, repository: target.repository, method: ctx.method };
  events.emit('cache', event);
  onResponseEnd(ctx, (end) => events.emit('served', { ...event, ...end }));
}
