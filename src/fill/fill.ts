/**
 * One upstream fetch of one blob, streamed into a spool file that every waiting client
 * reads from, and committed to the blob store only after its size and digest check out.
 *
 * The fill owns its lifecycle. It is never the stream handed to koa: koa destroys a body
 * stream when the client hangs up, and the layer would then never be cached (the bug that
 * distribution's proxy shipped). Clients get their own readers on the spool file; destroying
 * one of them releases that reader and nothing else. The fill stops only when the upstream
 * fails, its own timeout fires, or the owner shuts it down.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { deadline } from '../deadline.js';
import { checkDigest, SizeCheck } from '../digest.js';
import { OciError } from '../errors.js';
import type { Digest } from '../reference.js';
import { FillRefusal, type FillRefusalReason } from './limits.js';
import type { FillOptions, FillSource, FillSourceResponse, FillState } from './types.js';

export type { FillOptions, FillSource, FillSourceResponse, FillState } from './types.js';
import { FillReader, type FillHold, type FillView } from './reader.js';
import { SpoolHash } from './spool-hash.js';
import { SpoolWriter } from './spool-writer.js';
import { RecentWindow } from './window.js';

/**
 * One blob on its way from the upstream to the store: spooled, hashed, verified, committed, and
 * read by any number of clients meanwhile. Its progress is its own: readers see it through the
 * read-only `FillView`, observers through the getters. (A little over 300 lines: the state and
 * the steps that change it stay in one class so that no other file can change it.)
 */
export class Fill implements FillView {
  readonly digest: Digest;
  /** Resolves once the upstream answered (with the declared size), or rejects with its error. */
  readonly ready: Promise<{ size: number | undefined }>;
  /** Resolves once the blob is committed to the store; rejects when the fill failed. */
  readonly done: Promise<void>;

  #state: FillState = 'starting';
  #error: Error | undefined;
  #written = 0;
  #received = 0;
  #size: number | undefined;
  #alreadyStored = false;
  #relayed = false;

  private handle: FileHandle | undefined;
  /** The worker hashing the spool; while set, the worker may read `handle`, which must stay open. */
  private hashing: SpoolHash | undefined;
  private readers = 0;
  private wake: (() => void) | undefined;
  private wakePromise: Promise<void> | undefined;
  private readonly options: FillOptions;
  private readonly controller = new AbortController();
  private readonly recent = new RecentWindow(RECENT_WINDOW);

  constructor(digest: Digest, source: FillSource, options: FillOptions) {
    this.digest = digest;
    this.options = options;
    const { signal, clear } = deadline(
      options.timeout,
      () => new OciError('UNAVAILABLE', `blob fill timed out after ${options.timeout} ms`),
      options.signal,
      this.controller.signal,
    );
    let readyResolve!: (v: { size: number | undefined }) => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.done = this.run(source, signal, readyResolve, readyReject).finally(clear);
    // Both are observed by whoever awaits them; these keep an unobserved failure from crashing the process.
    this.ready.catch(() => {});
    this.done.catch(() => {});
  }

  get state(): FillState {
    return this.#state;
  }
  get error(): Error | undefined {
    return this.#error;
  }
  /** Bytes in the spool so far. */
  get written(): number {
    return this.#written;
  }
  /** Bytes received and hashed so far; those past `written` are only in memory (the recent window). */
  get received(): number {
    return this.#received;
  }
  /** Declared size until the end, then the verified size. */
  get size(): number | undefined {
    return this.#size;
  }
  /** The store already had the blob: readers go to the store instead of the spool. */
  get alreadyStored(): boolean {
    return this.#alreadyStored;
  }
  /** The bytes come from another replica's fill, not from an upstream (see `FillSourceResponse.relayed`). */
  get relayed(): boolean {
    return this.#relayed;
  }

  /** Which limit stopped the fill, if one did. */
  get refused(): FillRefusalReason | undefined {
    return this.#error instanceof FillRefusal ? this.#error.reason : undefined;
  }

  get settled(): boolean {
    return this.#state === 'committed' || this.#state === 'failed';
  }

  bounds(hold: FillHold): { limit: number; total: number | undefined } {
    const verified = this.#state === 'verified' || this.#state === 'committed';
    // The last byte waits until the digest has been checked: no client ever gets a complete
    // response for content that turns out to be wrong.
    const checked = verified ? this.#written : Math.max(0, this.#received - 1);
    const limit =
      hold === 'none' ? this.#received : hold === 'committed' && this.#state !== 'committed' ? Math.min(checked, Math.max(0, this.#received - 1)) : checked;
    return { limit, total: verified ? this.#written : this.#size };
  }

  /** Resolves at the next progress or state change. */
  changed(): Promise<void> {
    if (this.settled) return Promise.resolve();
    this.wakePromise ??= new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    return this.wakePromise;
  }

  /**
   * A reader of bytes [start, end] (inclusive; `end` defaults to the last byte). Slow readers
   * only slow themselves: they read the spool file at their own pace. Once the spool is gone
   * (the blob was already stored, or committed and closed), the store serves the bytes.
   * `untilCommitted` holds the last byte until the blob is in the store, not only verified: a
   * replica relaying this fill then finds the blob stored when its own copy ends, and uploads nothing.
   */
  async reader(start = 0, end?: number, { untilCommitted = false } = {}): Promise<Readable> {
    if (this.#state === 'failed') throw this.#error;
    if (this.#alreadyStored || (this.#state === 'committed' && !this.handle)) {
      const stream = await this.options.store.read(this.digest.value, { start, end });
      if (!stream) throw new OciError('BLOB_UNKNOWN', `blob ${this.digest.value} vanished from storage`);
      return stream;
    }
    return this.newReader(start, end, untilCommitted ? 'committed' : 'verified');
  }

  fromMemory(position: number, max: number): Buffer | undefined {
    return this.recent.read(position, max);
  }

  /** Positional read from the spool; safe while the fill is still writing. */
  async readAt(buffer: Buffer, position: number): Promise<number> {
    if (!this.handle) throw this.#error ?? new Error('spool is not open');
    const { bytesRead } = await this.handle.read(buffer, 0, buffer.length, position);
    return bytesRead;
  }

  /** Stops the fill; nothing is committed. */
  abort(reason: Error = new OciError('UNAVAILABLE', 'blob fill aborted')): void {
    this.controller.abort(reason);
  }

  private newReader(start: number, end: number | undefined, hold: FillHold): FillReader {
    this.readers++;
    return new FillReader(this, start, end, () => this.release(), hold);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    this.wakePromise = undefined;
    wake?.();
  }

  private release(): void {
    this.readers--;
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.readers === 0 && this.settled && this.handle && !this.hashing) {
      const handle = this.handle;
      this.handle = undefined;
      handle.close().catch(() => {});
    }
  }

  /** The fill's steps, in order: the spool, the upstream's answer, the bytes, the commit. */
  private async run(
    source: FillSource,
    signal: AbortSignal,
    readyResolve: (v: { size: number | undefined }) => void,
    readyReject: (e: Error) => void,
  ): Promise<void> {
    const run: RunState = { putAbort: new AbortController() };
    try {
      // A fill that finished a moment ago may have committed between the caller's stat and now.
      const existing = await this.options.store.stat(this.digest.value);
      if (existing) {
        this.#alreadyStored = true;
        this.#size = this.#written = this.#received = existing.size;
        readyResolve({ size: existing.size });
        this.#state = 'committed';
        return;
      }
      const dir = await this.openSpool(run);
      const res = await source(signal);
      // Awaited at the commit; until then a failure of it must not go unheard.
      res.beforeCommit?.catch(() => {});
      run.beforeCommit = res.beforeCommit;
      run.body = res.body;
      this.#size = res.size;
      this.#relayed = res.relayed === true;
      // Before `ready`: a refusal is still an error response, not a cut 200.
      run.release = await this.options.limits.admit(this.digest.value, dir, res.size, () => this.#written);
      this.#state = 'running';
      readyResolve({ size: res.size });
      await this.stream(res, signal, run);
      await this.commit(res, run);
    } catch (err) {
      const error = toError(err, signal);
      this.#error = error;
      this.#state = 'failed';
      // An undici body destroyed before its end emits an error, and one refused before the
      // pipeline started has nobody listening: unheard, it would take the process down.
      run.body?.on('error', () => {}).destroy();
      run.putAbort.abort(error);
      readyReject(error);
      this.notify();
      // The fill is over only when the store has cleaned up after the aborted put too, the hash
      // worker has let go of the spool, and what the source started has finished writing.
      await Promise.allSettled([run.put, run.spoolPath && unlink(run.spoolPath), this.stopHashing(), run.beforeCommit]);
      throw error;
    } finally {
      run.release?.();
      this.recent.clear();
      this.maybeClose();
    }
  }

  /** Opens the spool file; returns the directory it lies in. */
  private async openSpool(run: RunState): Promise<string> {
    const { store } = this.options;
    const dir = store.spool?.dir ?? this.options.spoolDir;
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${this.digest.hex.slice(0, 16)}-${randomUUID()}.fill`);
    this.handle = await open(path, 'w+');
    if (store.spool) run.spoolPath = path;
    // Nothing needs the name any more: an unlinked spool vanishes by itself if the process dies.
    else await unlink(path);
    return dir;
  }

  /** Receives, hashes and spools the body, handing batches to readers from memory meanwhile; verifies it. */
  private async stream(res: FillSourceResponse, signal: AbortSignal, run: RunState): Promise<void> {
    const { store, limits } = this.options;
    if (!store.spool && !res.relayed) {
      // Stores without a local spool (S3, Keyv) take the bytes through put(), which verifies
      // on its own; it follows the spool like any other reader, so it cannot slow the fill.
      run.put = store.put(this.digest.value, this.newReader(0, undefined, 'none'), { size: res.size, signal: run.putAbort.signal });
      run.put.catch(() => {});
    }
    const sizeCheck = new SizeCheck(res.size);
    const hash = (this.hashing = new SpoolHash(this.handle!.fd, this.digest));
    const writer = new SpoolWriter(
      this.handle!,
      sizeCheck,
      (batch, end) => {
        // Without a declared size only this bounds the body; the batch that passes the limit goes nowhere.
        limits.checkReceived(this.digest.value, end);
        // Clients stream from memory while the batch is still on its way to the disk.
        this.recent.push(batch);
        this.#received = end;
        this.recent.trim(this.#written);
        this.notify();
      },
      (end) => {
        this.#written = end;
        hash.written(end);
        this.recent.trim(end);
        this.notify();
      },
    );
    const onAbort = () => res.body.destroy(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      signal.throwIfAborted();
      await pipeline(res.body, writer);
      signal.throwIfAborted();
      this.#size = sizeCheck.verify();
      checkDigest(this.digest, await untilAborted(hash.digest(this.#size), signal));
      this.hashing = undefined;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    this.#state = 'verified';
    this.notify();
  }

  /** Resolves once the hash worker no longer reads the spool. */
  private async stopHashing(): Promise<void> {
    const hash = this.hashing;
    if (!hash) return;
    await hash.close();
    this.hashing = undefined;
  }

  /** Puts the verified blob in the store: by rename, through the put that followed the fill, or by a put now. */
  private async commit(res: FillSourceResponse, run: RunState): Promise<void> {
    const { store } = this.options;
    await res.beforeCommit;
    if (res.relayed && (await store.stat(this.digest.value))) {
      // The holder committed it (its relay holds the last byte until then): no second upload.
      if (run.spoolPath) await unlink(run.spoolPath);
      run.spoolPath = undefined;
    } else if (store.spool && run.spoolPath) {
      await store.spool.adopt(this.digest.value, run.spoolPath, this.#size!);
      run.spoolPath = undefined;
    } else {
      run.put ??= store.put(this.digest.value, this.newReader(0, undefined, 'none'), { size: this.#size, signal: run.putAbort.signal });
      await run.put;
    }
    this.#state = 'committed';
    this.notify();
  }
}

/** What one run of a fill holds, for its steps and for the cleanup after a failure. */
interface RunState {
  spoolPath?: string;
  body?: Readable;
  put?: Promise<unknown>;
  putAbort: AbortController;
  release?: () => void;
  beforeCommit?: Promise<unknown>;
}

/**
 * How much of the newest data a fill keeps in memory for the readers that follow it live. 2 MiB
 * was tried with the spool writer's 2 MiB (spool-writer.ts): one client 3 % less CPU and 8 MB
 * less peak, but 300 clients on one cold blob fell behind it and read the spool instead, each
 * with buffers of its own: peak RSS 211-217 against 150-154 MB, 1,300-1,500 against 3,400-4,500
 * MB/s (3 runs each).
 */
const RECENT_WINDOW = 4 * 1024 * 1024;

/** `promise`, or the signal's reason once it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function toError(err: unknown, signal: AbortSignal): Error {
  if (signal.aborted && signal.reason instanceof Error) return signal.reason;
  if (err instanceof Error) return err;
  return new Error(String(err));
}
