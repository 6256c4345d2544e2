/**
 * A stored blob's bytes as a response body. Read like any Readable it is one: each chunk a new
 * buffer the consumer may keep. Piped into an HTTP response (koa pipes a stream body, through
 * stream.pipeline) it sends from two buffers of its own, taking turns: one is read into while the
 * socket writes the other, and a buffer is read into again only once the socket has finished
 * with it (the write's callback). A warm pull then allocates nothing per chunk: a fresh buffer
 * per read would be garbage for the collector to find, and V8 lets up to 64 MB of such
 * outside-the-heap garbage pile up before it looks, per process, whatever the blob's size.
 */
import type { FileHandle } from 'node:fs/promises';
import { ServerResponse } from 'node:http';
import { Readable, type Writable } from 'node:stream';

const CHUNK = 1024 * 1024;

export class FileBody extends Readable {
  private position: number;
  /** Exclusive. */
  private readonly end: number;
  private piped = false;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    endInclusive: number,
  ) {
    super({ highWaterMark: CHUNK });
    this.position = start;
    this.end = endInclusive + 1;
  }

  override _read(): void {
    const n = Math.min(CHUNK, this.end - this.position);
    if (n <= 0) {
      this.push(null);
      return;
    }
    const buffer = Buffer.allocUnsafe(n);
    this.handle.read(buffer, 0, n, this.position).then(({ bytesRead }) => {
      if (bytesRead === 0) return this.destroy(truncated(this.position, this.end));
      this.position += bytesRead;
      this.push(bytesRead === n ? buffer : buffer.subarray(0, bytesRead));
    }, (err: Error) => this.destroy(err));
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.handle.close().then(
      () => callback(err),
      (closeErr: Error) => callback(err ?? closeErr),
    );
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    // Only a response, whose write callbacks say when a buffer is free again, and only a
    // stream nobody has started reading: anything else gets the ordinary pipe.
    if (!(destination instanceof ServerResponse) || this.piped || this.readableFlowing !== null) return super.pipe(destination, options);
    this.piped = true;
    // koa hands the body to stream.pipeline, which pipes with `end: false` and ends the response on our 'end'.
    this.send(destination, options?.end !== false).then(
      // Stopped early (the client went away, or this stream was destroyed): the file closes now.
      (ended) => ended || this.destroy(),
      (err: Error) => this.destroy(err),
    );
    return destination;
  }

  /** Resolves true once the whole range is sent and this stream has ended, false when stopped early. */
  private async send(res: Writable, end: boolean): Promise<boolean> {
    const size = Math.min(CHUNK, this.end - this.position);
    const buffers: Buffer[] = [];
    const writing: Array<Promise<void> | undefined> = [undefined, undefined];
    // A response that closes early may not call back every write; nothing waits past its close.
    const closed = new Promise<void>((resolve) => res.once('close', resolve));
    for (let turn = 0; this.position < this.end; turn ^= 1) {
      await Promise.race([writing[turn], closed]);
      if (this.destroyed || res.destroyed) return false;
      const buffer = (buffers[turn] ??= Buffer.allocUnsafeSlow(size));
      const n = Math.min(buffer.length, this.end - this.position);
      const { bytesRead } = await this.handle.read(buffer, 0, n, this.position);
      if (this.destroyed || res.destroyed) return false;
      if (bytesRead === 0) throw truncated(this.position, this.end);
      this.position += bytesRead;
      const chunk = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      writing[turn] = new Promise<void>((resolve) => res.write(chunk, () => resolve()));
      if (res.writableNeedDrain) await Promise.race([new Promise((resolve) => res.once('drain', resolve)), closed]);
    }
    await Promise.race([Promise.all(writing), closed]);
    if (this.destroyed || res.destroyed) return false;
    if (end) res.end();
    // Ends this stream too, which closes the file.
    this.push(null);
    this.resume();
    return true;
  }
}

function truncated(position: number, end: number): Error {
  return new Error(`blob file ended at ${position} bytes, before ${end}: it changed while being read`);
}
