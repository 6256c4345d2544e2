/**
 * Shared by every adapter because the contract asks it of every `put` (src/storage.ts): a put
 * that fails before its pipeline starts still owes its source an end, since an unread HTTP body
 * holds its connection. (Once started, pipeline destroys the source itself.)
 */
import { Readable } from 'node:stream';

export function release(source: Readable | AsyncIterable<Uint8Array>): void {
  if (source instanceof Readable) source.destroy();
  else void source[Symbol.asyncIterator]().return?.()?.catch(() => {});
}
