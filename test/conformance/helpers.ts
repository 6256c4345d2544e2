/** Sources and sinks the conformance suites drive stores with; none of it touches a store. */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach } from 'vitest';

interface Harness {
  store: { close?(): Promise<void> };
  cleanup(): Promise<void>;
}

/** A fresh harness for every test, closed and cleaned up after it; read it through the getter. */
export function harnessPerTest<H extends Harness>(factory: () => Promise<H>): () => H {
  let harness: H | undefined;
  beforeEach(async () => {
    harness = await factory();
  });
  afterEach(async () => {
    const done = harness;
    harness = undefined;
    await done?.store.close?.();
    await done?.cleanup();
  });
  return () => {
    if (!harness) throw new Error('the harness exists only while a test runs');
    return harness;
  };
}

/** What a promise rejected with, or `undefined` when it resolved; for asserting on causes. */
export function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce and nothing is stored in the repo. */
export function pseudoRandomBytes(length: number, seed = 1): Buffer {
  const words = new Uint32Array(Math.ceil(length / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, length);
}

/** Plain Uint8Array chunks, not Buffers: stores must accept what the interface promises. */
export async function* chunked(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.byteLength; i += size) yield new Uint8Array(data.subarray(i, i + size));
}

/**
 * A source that yields `head`, then waits: `taken` resolves once the store has taken `head`
 * and asked for more; `finish()` yields `tail` and ends, `fail()` errors the source.
 */
export function stallingSource(head: Uint8Array, tail: Uint8Array = new Uint8Array()) {
  const taken = deferred();
  const gate = deferred<'finish' | Error>();
  async function* source(): AsyncGenerator<Uint8Array> {
    yield head;
    taken.resolve();
    const next = await gate.promise;
    if (next instanceof Error) throw next;
    if (tail.byteLength > 0) yield tail;
  }
  return {
    source: source(),
    taken: taken.promise,
    finish: () => gate.resolve('finish'),
    fail: (err: Error) => gate.resolve(err),
  };
}

export interface Summary {
  size: number;
  sha256: string;
}

/** Size and hash stand in for bytes in assertions: deep-equal on megabytes is slow and its diff unreadable. */
export function summary(bytes: Uint8Array): Summary {
  return { size: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** The summary of everything a stream yields, without holding it; `undefined` for no stream. */
export async function readSummary(stream: Readable | undefined): Promise<Summary | undefined> {
  if (!stream) return undefined;
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Uint8Array);
    size += (chunk as Uint8Array).byteLength;
  }
  return { size, sha256: hash.digest('hex') };
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** Whether `err` is `cause` or wraps it: stores may add context, but must not lose the reason. */
export function isOrWraps(err: unknown, cause: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e === cause) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
