/**
 * Serves a mirror's Prometheus metrics, for mounting in an application of your own:
 * `app.use(metricsEndpoint(createMetrics(mirror)))`.
 */
import type { Middleware } from 'koa';
import type { Metrics } from '../../src/metrics/index.js';

export interface MetricsEndpointOptions {
  path?: string;
}

export const metricsEndpoint = (metrics: Metrics, { path = '/metrics' }: MetricsEndpointOptions = {}): Middleware =>
  async function metricsEndpoint(ctx, next) {
    if (ctx.path !== path || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.set('Content-Type', metrics.contentType);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await metrics.text();
  };
