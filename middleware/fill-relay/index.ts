/**
 * `GET /_mirror/fills/<digest>`: a replica's fill in flight, streamed from byte 0 and then
 * live, or the stored blob, or 404. Other replicas of the same mirror read it instead of the
 * upstream when they lose the race for a blob. The last byte waits until the blob is
 * committed (not only verified), so the reader finds it stored when its own copy ends and
 * does not upload it again. Answers only requests that carry the shared secret.
 */
import type { Middleware } from 'koa';
import type { Fills } from '../../src/fill/index.js';
import { parseDigest, type Digest } from '../../src/reference.js';
import { FILLS_PATH, REPLICA_SECRET_HEADER } from '../../src/replication/relay.js';
import { secretMatcher } from '../../src/secrets.js';
import type { BlobStore } from '../../src/storage.js';

export interface FillRelayOptions {
  fills: Fills;
  blobs: BlobStore;
  secret: string;
}

export const fillRelay = ({ fills, blobs, secret }: FillRelayOptions): Middleware => {
  const matches = secretMatcher(secret);
  return async function fillRelay(ctx, next) {
    if (!ctx.path.startsWith(FILLS_PATH)) return next();
    if (!matches(ctx.get(REPLICA_SECRET_HEADER))) {
      ctx.status = 401;
      return;
    }
    const digest = digestOrUndefined(ctx.path.slice(FILLS_PATH.length));
    if (!digest || ctx.method !== 'GET') {
      ctx.status = digest ? 405 : 400;
      return;
    }
    ctx.set('Content-Type', 'application/octet-stream');
    ctx.set('Docker-Content-Digest', digest.value);
    const fill = fills.get(digest.value);
    if (fill) {
      try {
        const { size } = await fill.ready;
        const body = await fill.reader(0, undefined, { untilCommitted: true });
        if (size !== undefined) ctx.length = size;
        ctx.body = body;
        return;
      } catch {
        // The fill failed: fall through to storage, which may still hold an earlier copy.
      }
    }
    const info = await blobs.stat(digest.value);
    const stream = info && (await blobs.read(digest.value));
    if (!info || !stream) {
      ctx.status = 404;
      return;
    }
    ctx.length = info.size;
    ctx.body = stream;
  };
};

function digestOrUndefined(value: string): Digest | undefined {
  try {
    return parseDigest(value);
  } catch {
    return undefined;
  }
}
