/** Small HTTP helpers shared by the middlewares. */
import type { Readable } from 'node:stream';
import { OciError } from './errors.js';

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Reads a whole (small) body, refusing more than `max` bytes; the stream is destroyed either way. */
export async function readCapped(body: Readable, max: number, what = 'response'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) throw new OciError('SIZE_INVALID', `${what} is larger than ${max} bytes`, { status: 502 });
      chunks.push(chunk);
    }
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks, size);
}

/** Discards a body we do not need, so the connection goes back to the pool. */
export function discard(body: Readable): void {
  body.resume();
  body.on('error', () => {});
}

/** True when an `If-None-Match` header names this ETag (or `*`). */
export function matchesEtag(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '');
    return v === '*' || v === etag;
  });
}
