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
import { DigestVerifier } from '../digest.js';
import { OciError } from '../errors.js';
import type { Digest } from '../reference.js';
import type { BlobStore } from '../storage.js';
import { FillRefusal, type FillLimits, type FillRefusalReason } from './limits.js';
import { FillReader, type FillReaderOptions } from './reader.js';
import { SpoolWriter } from './spool-writer.js';

export interface FillSourceResponse {
  /** Declared size, when the upstream sent a Content-Length. */
  size: number | undefined;
  body: Readable;
  /**
   * The bytes come from another replica's fill, which commits them to the shared store: this
   * fill only verifies them, and commits only if the blob is still missing once verified.
   */
  relayed?: boolean;
}

/** Opens the upstream body; rejects with an OciError for an upstream that answers with an error. */
export type FillSource = (signal: AbortSignal) => Promise<FillSourceResponse>;

export type FillState = 'starting' | 'running' | 'verified' | 'committed' | 'failed';

export interface FillOptions {
  store: BlobStore;
  /** Where to spool when the store has no spool capability of its own. */
  spoolDir: string;
  /** Shutdown of the owner. */
  signal: AbortSignal;
  /** The longest this fill may take, ms. */
  timeout: number;
  /** The largest blob, and the free space a fill must leave; shared by the fills of one registry. */
  limits: FillLimits;
}

export class Fill {
  readonly digest: Digest;
  /** Resolves once the upstream answered (with the declared size), or rejects with its error. */
  readonly ready: Promise<{ size: number | undefined }>;
  /** Resolves once the blob is committed to the store; rejects when the fill failed. */
  readonly done: Promise<void>;

  state: FillState = 'starting';
  error: Error | undefined;
  /** Bytes in the spool so far. */
  written = 0;
  /** Bytes received and hashed so far; those past `written` are only in memory (the recent window). */
  received = 0;
  /** Declared size until the end, then the verified size. */
  size: number | undefined;
  /** Set when the store already had the blob: readers go to the store instead of the spool. */
  alreadyStored = false;
  /** The bytes come from another replica's fill, not from an upstream (see `FillSourceResponse.relayed`). */
  relayed = false;

  private handle: FileHandle | undefined;
  private readers = 0;
  private wake: (() => void) | undefined;
  private wakePromise: Promise<void> | undefined;
  private readonly options: FillOptions;
  private readonly controller = new AbortController();

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

  /** Bytes a reader may hand out now: the last byte waits until the digest has been checked. */
  get readable(): number {
    return this.state === 'verified' || this.state === 'committed' ? this.written : Math.max(0, this.received - 1);
  }

  /** Which limit stopped the fill, if one did. */
  get refused(): FillRefusalReason | undefined {
    return this.error instanceof FillRefusal ? this.error.reason : undefined;
  }

  get settled(): boolean {
    return this.state === 'committed' || this.state === 'failed';
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
   */
  async reader(start = 0, end?: number, options: Pick<FillReaderOptions, 'untilCommitted'> = {}): Promise<Readable> {
    if (this.state === 'failed') throw this.error;
    if (this.alreadyStored || (this.state === 'committed' && !this.handle)) {
      const stream = await this.options.store.read(this.digest.value, { start, end });
      if (!stream) throw new OciError('BLOB_UNKNOWN', `blob ${this.digest.value} vanished from storage`);
      return stream;
    }
    this.readers++;
    return new FillReader(this, start, end, () => this.release(), { holdTail: true, ...options });
  }

  /**
   * The last bytes written, kept in memory so that readers following the fill closely (the
   * usual case) are served without reading back from the spool: one copy of the window per
   * fill, whatever the number of readers. Readers further behind read the file.
   */
  private recent: Buffer[] = [];
  private recentStart = 0;
  private recentBytes = 0;

  private remember(batch: Buffer[]): void {
    for (const b of batch) {
      this.recent.push(b);
      this.recentBytes += b.length;
      this.received += b.length;
    }
    this.trim();
  }

  /** Drops the oldest buffers beyond the window, but never one that is not in the file yet. */
  private trim(): void {
    for (let head = this.recent[0]; head; head = this.recent[0]) {
      if (this.recentBytes - head.length < RECENT_WINDOW || this.recentStart + head.length > this.written) break;
      this.recent.shift();
      this.recentBytes -= head.length;
      this.recentStart += head.length;
    }
  }

  /** Up to `max` bytes at `position` from the in-memory window, without copying; undefined when not there. */
  fromMemory(position: number, max: number): Buffer | undefined {
    if (position < this.recentStart || position >= this.recentStart + this.recentBytes) return undefined;
    let offset = this.recentStart;
    for (const b of this.recent) {
      if (position < offset + b.length) {
        const from = position - offset;
        return b.subarray(from, Math.min(b.length, from + max));
      }
      offset += b.length;
    }
    return undefined;
  }

  /** Positional read from the spool; safe while the fill is still writing. */
  async readAt(buffer: Buffer, position: number): Promise<number> {
    if (!this.handle) throw this.error ?? new Error('spool is not open');
    const { bytesRead } = await this.handle.read(buffer, 0, buffer.length, position);
    return bytesRead;
  }

  /** Stops the fill; nothing is committed. */
  abort(reason: Error = new OciError('UNAVAILABLE', 'blob fill aborted')): void {
    this.controller.abort(reason);
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
    if (this.readers === 0 && this.settled && this.handle) {
      const handle = this.handle;
      this.handle = undefined;
      handle.close().catch(() => {});
    }
  }

  private async run(
    source: FillSource,
    signal: AbortSignal,
    readyResolve: (v: { size: number | undefined }) => void,
    readyReject: (e: Error) => void,
  ): Promise<void> {
    const { store, limits } = this.options;
    let spoolPath: string | undefined;
    let release: (() => void) | undefined;
    let body: Readable | undefined;
    let put: Promise<unknown> | undefined;
    const putAbort = new AbortController();
    try {
      // A fill that finished a moment ago may have committed between the caller's stat and now.
      const existing = await store.stat(this.digest.value);
      if (existing) {
        this.alreadyStored = true;
        this.size = existing.size;
        this.written = existing.size;
        this.received = existing.size;
        readyResolve({ size: existing.size });
        this.state = 'committed';
        return;
      }

      const dir = store.spool?.dir ?? this.options.spoolDir;
      await mkdir(dir, { recursive: true });
      spoolPath = join(dir, `${this.digest.hex.slice(0, 16)}-${randomUUID()}.fill`);
      this.handle = await open(spoolPath, 'w+');
      if (!store.spool) {
        // Nothing needs the name any more: an unlinked spool vanishes by itself if the process dies.
        await unlink(spoolPath);
        spoolPath = undefined;
      }

      const res = await source(signal);
      body = res.body;
      this.size = res.size;
      this.relayed = res.relayed === true;
      // Before `ready`: a refusal is still an error response, not a cut 200.
      release = await limits.admit(this.digest.value, dir, res.size, () => this.written);
      this.state = 'running';
      readyResolve({ size: res.size });

      if (!store.spool && !res.relayed) {
        // Stores without a local spool (S3, Keyv) take the bytes through put(), which verifies
        // on its own; it follows the spool like any other reader, so it cannot slow the fill.
        this.readers++;
        const source = new FillReader(this, 0, undefined, () => this.release(), { holdTail: false });
        put = store.put(this.digest.value, source, { size: res.size, signal: putAbort.signal });
        put.catch(() => {});
      }

      const verifier = new DigestVerifier(this.digest, res.size);
      const writer = new SpoolWriter(
        this.handle,
        verifier,
        (batch, end) => {
          // Without a declared size only this bounds the body; the batch that passes the limit goes nowhere.
          limits.checkReceived(this.digest.value, end);
          // Clients stream from memory while the batch is still on its way to the disk.
          this.remember(batch);
          this.notify();
        },
        (end) => {
          this.written = end;
          this.trim();
          this.notify();
        },
      );
      const onAbort = () => body?.destroy(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        signal.throwIfAborted();
        await pipeline(body, writer);
        signal.throwIfAborted();
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      this.size = verifier.verify();
      this.state = 'verified';
      this.notify();

      if (res.relayed && (await store.stat(this.digest.value))) {
        // The holder committed it (its relay holds the last byte until then): no second upload.
        if (spoolPath) await unlink(spoolPath);
        spoolPath = undefined;
      } else if (store.spool && spoolPath) {
        await store.spool.adopt(this.digest.value, spoolPath, this.size);
        spoolPath = undefined;
      } else if (put) {
        await put;
      } else {
        this.readers++;
        const verified = new FillReader(this, 0, undefined, () => this.release(), { holdTail: false });
        put = store.put(this.digest.value, verified, { size: this.size, signal: putAbort.signal });
        await put;
      }
      this.state = 'committed';
      this.notify();
    } catch (err) {
      const error = toError(err, signal);
      this.error = error;
      this.state = 'failed';
      // An undici body destroyed before its end emits an error, and one refused before the
      // pipeline started has nobody listening: unheard, it would take the process down.
      body?.on('error', () => {}).destroy();
      putAbort.abort(error);
      readyReject(error);
      this.notify();
      // The fill is over only when the store has cleaned up after the aborted put too.
      await Promise.allSettled([put, spoolPath && unlink(spoolPath)]);
      throw error;
    } finally {
      release?.();
      this.recent = [];
      this.recentBytes = 0;
      this.maybeClose();
    }
  }
}

/** How much of the newest data a fill keeps in memory for the readers that follow it live. */
const RECENT_WINDOW = 4 * 1024 * 1024;

function toError(err: unknown, signal: AbortSignal): Error {
  if (signal.aborted && signal.reason instanceof Error) return signal.reason;
  if (err instanceof Error) return err;
  return new Error(String(err));
}
