/**
 * The status page at `/_mirror/`: `GET /_mirror/` (the page), `GET /_mirror/status.json`
 * (what the page polls) and `GET /_mirror/assets/…` (its script and styles, and uPlot's, from
 * node_modules: the page works with no way out of the network). Every other path, the admin
 * API and the replica relay under `/_mirror/` among them, goes on to `next()`.
 *
 *   app.use(statusPage({ status: createStatus(mirror, createMetrics(mirror)) }));
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Context, Middleware, Next } from 'koa';
import compose from 'koa-compose';
import { ociErrors } from '../oci-errors/index.js';
import type { Status } from '../../src/status/index.js';

export interface StatusPageOptions {
  status: Pick<Status, 'snapshot'>;
  /** Where the page lives. Default `/_mirror`. */
  prefix?: string;
  /** How often the open page asks for a new snapshot, ms. Default 5 s. */
  refresh?: number;
  /**
   * Runs before anything of the page is served; answers or throws to refuse (errors are sent in
   * the OCI error shape, with their headers, such as a Basic challenge). The standalone server
   * passes `requireClient` when the mirror is protected. The client it leaves in
   * `ctx.state.client` is the viewer status.json is cut for; without one, an anonymous viewer.
   */
  authorize?: Middleware;
}

interface Asset {
  type: string;
  body: Buffer;
}

const require = createRequire(import.meta.url);
// `npm run build` copies assets/ beside the compiled module, so this holds from dist/ as from source.
const ASSET_DIR = join(import.meta.dirname, 'assets');

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

// No inline script or style: repository names come from clients, and a page that only runs
// its own files cannot be made to run theirs.
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Read once at start-up: a build that lost a file fails here, naming it, not on the first visit. */
function loadAssets(refresh: number): { page: Buffer; assets: Map<string, Asset> } {
  const read = (path: string) => readFileSync(path);
  const js = 'text/javascript; charset=utf-8';
  const css = 'text/css; charset=utf-8';
  const assets = new Map<string, Asset>([
    ['status.js', { type: js, body: read(join(ASSET_DIR, 'status.js')) }],
    ['status.css', { type: css, body: read(join(ASSET_DIR, 'status.css')) }],
    ['uPlot.iife.min.js', { type: js, body: read(require.resolve('uplot/dist/uPlot.iife.min.js')) }],
    ['uPlot.min.css', { type: css, body: read(require.resolve('uplot/dist/uPlot.min.css')) }],
  ]);
  const page = Buffer.from(readFileSync(join(ASSET_DIR, 'index.html'), 'utf8').replace('{{refresh}}', String(Math.round(refresh))));
  return { page, assets };
}

export const statusPage = ({ status, prefix = '/_mirror', refresh = 5000, authorize }: StatusPageOptions): Middleware => {
  const base = prefix.replace(/\/+$/, '');
  const assetPrefix = `${base}/assets/`;
  const { page, assets } = loadAssets(refresh);
  const guarded = authorize && compose([ociErrors(), authorize]);
  const ours = (path: string) => path === base || path === `${base}/` || path === `${base}/status.json` || path.startsWith(assetPrefix);

  return async function statusPage(ctx, next) {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (guarded && ours(ctx.path)) return guarded(ctx, () => serve(ctx, next));
    return serve(ctx, next);
  };

  async function serve(ctx: Context, next: Next): Promise<void> {
    const path = ctx.path;
    if (path === base) {
      // Relative asset URLs in the page only resolve under the trailing slash.
      ctx.redirect(`${base}/`);
      return;
    }
    if (path === `${base}/`) {
      ctx.set(SECURITY_HEADERS);
      ctx.set('Content-Security-Policy', CSP);
      ctx.set('Cache-Control', 'no-cache');
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = page;
      return;
    }
    if (path === `${base}/status.json`) {
      ctx.set(SECURITY_HEADERS);
      ctx.set('Cache-Control', 'no-store');
      // The viewer `authorize` recognized, if any: the snapshot holds only what it may pull.
      ctx.body = await status.snapshot(ctx.state.client?.name);
      return;
    }
    if (path.startsWith(assetPrefix)) {
      const asset = assets.get(path.slice(assetPrefix.length));
      ctx.set(SECURITY_HEADERS);
      if (!asset) {
        ctx.status = 404;
        ctx.body = 'not found';
        return;
      }
      ctx.set('Cache-Control', 'no-cache');
      ctx.type = asset.type;
      ctx.body = asset.body;
      return;
    }
    return next();
  }
};
