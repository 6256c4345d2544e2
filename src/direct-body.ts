/**
 * A response body that writes itself into the HTTP response when koa pipes it there (koa hands a
 * stream body to stream.pipeline, which calls `pipe`), instead of going through a Readable's
 * buffer. Two things are gained on the data path: no stream turn per chunk, and buffers that can
 * be reused, since a write's callback says when the socket is done with one. A fresh buffer per
 * chunk is garbage, and V8 lets up to 64 MB of such outside-the-heap garbage pile up before it
 * collects, whatever the blob's size. Read any other way, the body is an ordinary Readable.
 */
import { ServerResponse } from 'node:http';
import { Readable, type Writable } from 'node:stream';

/**
 * What the direct bodies sending share out, by their number at each one's start: ten that start
 * one after another hold 23 MiB (the first two buffers of 4 MiB, the second body's of 2, the
 * tenth's of 384 KiB), a hundred about 40 MiB, and past that each adds its two MIN_BUFFERs. The
 * smallest budget that still gives a lone body 4 MiB: 16 MiB gave ten warm clients the same
 * throughput and CPU for 17 MB more peak RSS (126 against 109 MB, 4 pairs). A hard cap at the
 * budget was tried: it left every body after the second at MIN_BUFFER, and ten warm clients at
 * two thirds of the throughput.
 */
const BUFFER_BUDGET = 8 * 1024 * 1024;
/** The smallest buffer a direct body is given, however many there are: one socket read's worth. */
const MIN_BUFFER = 64 * 1024;
/** Direct bodies sending now, in this process. */
let active = 0;

/** One buffer's size when `sending` bodies share BUFFER_BUDGET two buffers each: a multiple of MIN_BUFFER, at most `max`. */
export function bufferShare(sending: number, max: number): number {
  const share = Math.floor(BUFFER_BUDGET / 2 / Math.max(1, sending) / MIN_BUFFER) * MIN_BUFFER;
  return Math.min(max, Math.max(MIN_BUFFER, share));
}

export abstract class DirectBody extends Readable {
  private sending = false;

  /**
   * The size for this body's two buffers, at most `max`: large while few bodies send (a stored
   * blob is sent at near the static servers' speed from 4 MiB reads, 1.3 times what 1 MiB reads
   * give), smaller as more do, so that their sum grows with the logarithm of the number of
   * clients, not with the number (until every body is down to MIN_BUFFER).
   */
  protected bufferSize(max: number): number {
    return bufferShare(active, max);
  }

  /**
   * Writes the body into `to`; resolves true once it is all written (then calls `finish`),
   * false when it stopped early: the client went away, or this stream was destroyed.
   */
  protected abstract send(to: ResponseLink, end: boolean): Promise<boolean>;

  /** False while the ordinary Readable path is in use: the two must never both run. */
  protected canSendDirectly(): boolean {
    return true;
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (!(destination instanceof ServerResponse) || this.sending || this.readableFlowing !== null || !this.canSendDirectly()) {
      return super.pipe(destination, options);
    }
    this.sending = true;
    active++;
    // stream.pipeline pipes with `end: false` and ends the response itself on this stream's 'end'.
    this.send(new ResponseLink(destination), options?.end !== false)
      .finally(() => active--)
      .then(
        // Stopped early: destroying releases what the body holds (a file, a fill reader) now.
        (ended) => ended || this.destroy(),
        (err: Error) => this.destroy(err),
      );
    return destination;
  }

  /** Ends the response (when asked) and this stream, after the last write. */
  protected finish(to: ResponseLink, end: boolean): true {
    if (end) to.res.end();
    this.push(null);
    this.resume();
    return true;
  }
}

/**
 * The response a DirectBody writes to: writes, their callbacks, drains, and its close. Every wait
 * also ends when the response closes (a response that closes early may not call back every write,
 * nor drain), and leaves nothing behind once it has ended: a body waits here once or twice per
 * chunk, and a wait that stayed registered on the close (as `Promise.race` with one long-lived
 * close promise would) is memory that grows with the blob's size and the number of clients.
 */
export class ResponseLink {
  private readonly waiting = new Set<() => void>();
  private corked = false;

  constructor(readonly res: Writable) {
    res.once('close', () => {
      for (const wake of this.waiting) wake();
      this.waiting.clear();
    });
  }

  get gone(): boolean {
    return this.res.destroyed;
  }

  /** A chunk nobody reuses. */
  write(chunk: Buffer): void {
    this.corkForTick();
    this.res.write(chunk);
  }

  /** A chunk of a buffer to be reused: resolves once the socket is done with it (or the response closed). */
  writeOwned(chunk: Buffer): Promise<void> {
    this.corkForTick();
    return this.wait((done) => this.res.write(chunk, () => done()));
  }

  /** The chunks written in one tick (a fill's wake often finds several) go out in one writev. */
  private corkForTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.res.cork();
    process.nextTick(() => {
      this.corked = false;
      this.res.uncork();
    });
  }

  /** Resolves when the response wants more, or closed. */
  drained(): Promise<void> {
    if (!this.res.writableNeedDrain) return Promise.resolve();
    return this.wait((done) => this.res.once('drain', done));
  }

  /** Settles as `promise` does, or resolves at the response's close, whichever first. */
  until(promise: Promise<unknown> | undefined): Promise<void> {
    if (promise === undefined) return Promise.resolve();
    return this.wait((done, fail) => promise.then(done, fail));
  }

  /** Resolves at `start`'s `done` or the response's close; `fail` rejects. Nothing of it stays registered after. */
  private wait(start: (done: () => void, fail: (err: unknown) => void) => void): Promise<void> {
    if (this.res.closed) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.waiting.delete(done);
        resolve();
      };
      this.waiting.add(done);
      start(done, (err) => {
        this.waiting.delete(done);
        reject(err as Error);
      });
    });
  }
}
