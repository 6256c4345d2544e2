import type { Readable } from 'node:stream';

/**
 * Reads a whole body of at most `limit` bytes. Resolves `undefined` when the body is larger (the
 * stream is destroyed as soon as that is known, so an endless body costs no more than `limit`).
 * Rejects when the stream errors (a body timeout, a reset).
 */
export async function readWithin(body: Readable, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > limit) {
      body.destroy();
      return undefined;
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}

/**
 * Gets rid of a body nobody will read, so that its connection goes back to the pool (or is closed).
 * undici's bodies have `dump()`, which reads a little and destroys the stream past that; any other
 * stream is destroyed.
 */
export async function discard(body: Readable): Promise<void> {
  const dump = (body as Readable & { dump?: (opts?: { limit?: number }) => Promise<unknown> }).dump;
  if (typeof dump === 'function') {
    await dump.call(body, { limit: 64 * 1024 }).catch(() => undefined);
  } else {
    body.destroy();
  }
}
