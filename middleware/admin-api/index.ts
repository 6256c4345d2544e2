/**
 * The HTTP admin API, under `/_mirror/admin/`: the command line's `ls`, `purge`, `gc` and
 * `warm`, run inside the server on its own mirror (so eviction and the fills in flight see
 * what they do). Off unless the config enables it; every request needs the bearer token,
 * checked before anything else, so a caller without it learns nothing about the routes.
 * JSON in and out; errors are `{ "error": { "code", "message" } }`.
 *
 *   GET  /_mirror/admin/images                              → { images: CachedImage[] }
 *   POST /_mirror/admin/purge  { "reference": "repo:tag" }  → PurgeResult
 *   POST /_mirror/admin/gc                                  → GcResult
 *   POST /_mirror/admin/warm   { "images": [...], "platforms": ["linux/arm64"] } → WarmReport
 */
import type { Middleware, ParameterizedContext } from 'koa';
import { isOciError } from '../../src/errors.js';
import { trackPins } from '../../src/eviction/pins.js';
import { readCapped } from '../../src/http.js';
import { secretMatcher, type Secret } from '../../src/secrets.js';
import type { Mirror } from '../mirror/index.js';
import { gc } from '../../src/admin/gc.js';
import { parsePlatform } from '../../src/admin/image-ref.js';
import { listCached } from '../../src/admin/list.js';
import { purge } from '../../src/admin/purge.js';
import { warmImages } from '../../src/admin/warm.js';

export const ADMIN_PREFIX = '/_mirror/admin';
const MAX_BODY = 64 * 1024;

export interface AdminApiOptions {
  mirror: Mirror;
  /** The bearer token every request must carry; a function is asked on every request (a rotated token file). */
  token: Secret;
}

class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Handler = (ctx: ParameterizedContext, body: Record<string, unknown>) => Promise<unknown>;

export function adminApi({ mirror, token }: AdminApiOptions): Middleware {
  const matches = secretMatcher(token);
  const pins = trackPins(mirror.events);
  const maxManifestBytes = mirror.config.cache.maxManifestBytes;
  /** Purge and gc change the store: one at a time. */
  let exclusive: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const run = exclusive.then(work, work);
    exclusive = run.catch(() => {});
    return run;
  };

  const routes: Record<string, Handler> = {
    'GET /images': async () => {
      await mirror.eviction?.flush();
      return { images: await listCached({ storage: mirror.storage, maxManifestBytes }) };
    },
    'POST /purge': (_ctx, body) => {
      const reference = stringField(body, 'reference');
      return serialized(() =>
        purge(
          {
            storage: mirror.storage,
            routing: mirror.routing,
            events: mirror.events,
            maxManifestBytes,
            isPinned: (d) => pins.isServed(d) || mirror.fills.get(d) !== undefined,
          },
          reference,
        ),
      );
    },
    'POST /gc': () =>
      serialized(() => gc({ storage: mirror.storage, events: mirror.events, fills: mirror.fills, cache: mirror.config.cache, eviction: mirror.eviction, turns: mirror.evictionTurns })),
    'POST /warm': (_ctx, body) => {
      const images = stringList(body, 'images');
      if (images.length === 0) throw new AdminError(400, 'BAD_REQUEST', '"images" lists no image');
      const platforms = body.platforms === undefined ? [] : stringList(body, 'platforms').map(parsePlatform);
      return warmImages(mirror, images, { platforms });
    },
  };

  return async function adminApi(ctx, next) {
    if (ctx.path !== ADMIN_PREFIX && !ctx.path.startsWith(`${ADMIN_PREFIX}/`)) return next();
    ctx.set('Cache-Control', 'no-store');
    try {
      if (!authorized(ctx.get('Authorization'), matches)) {
        ctx.set('WWW-Authenticate', 'Bearer realm="oci-mirror admin"');
        throw new AdminError(401, 'UNAUTHORIZED', 'a valid admin bearer token is required');
      }
      const path = ctx.path.slice(ADMIN_PREFIX.length);
      const handler = routes[`${ctx.method} ${path}`];
      if (!handler) {
        const known = Object.keys(routes).some((r) => r.endsWith(` ${path}`));
        throw known ? new AdminError(405, 'METHOD_NOT_ALLOWED', `${ctx.method} is not allowed here`) : new AdminError(404, 'NOT_FOUND', `no admin route ${path}`);
      }
      const body = ctx.method === 'POST' ? await jsonBody(ctx) : {};
      ctx.body = await handler(ctx, body);
      ctx.status = 200;
    } catch (err) {
      const { status, code, message } = describe(err);
      ctx.status = status;
      ctx.body = { error: { code, message } };
    }
  };
}

function authorized(header: string, matches: (presented: string) => boolean): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m !== null && matches(m[1]!);
}

async function jsonBody(ctx: ParameterizedContext): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = (await readCapped(ctx.req, MAX_BODY, 'request body')).toString('utf8');
  } catch (err) {
    throw new AdminError(413, 'BAD_REQUEST', (err as Error).message);
  }
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AdminError(400, 'BAD_REQUEST', 'the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new AdminError(400, 'BAD_REQUEST', 'the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function stringField(body: Record<string, unknown>, key: string): string {
  const v = body[key];
  if (typeof v !== 'string' || v === '') throw new AdminError(400, 'BAD_REQUEST', `"${key}" must be a non-empty string`);
  return v;
}

function stringList(body: Record<string, unknown>, key: string): string[] {
  const v = body[key];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s !== '')) throw new AdminError(400, 'BAD_REQUEST', `"${key}" must be a list of strings`);
  return v as string[];
}

function describe(err: unknown): { status: number; code: string; message: string } {
  if (err instanceof AdminError) return { status: err.status, code: err.code, message: err.message };
  if (isOciError(err)) return { status: err.status, code: err.code, message: err.message };
  return { status: 500, code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
}
