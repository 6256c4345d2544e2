/**
 * A stored blob's bytes as a response body (see DirectBody): read like any Readable, each chunk
 * is a new buffer the consumer may keep; written into an HTTP response, it sends from two buffers
 * of its own, taking turns, one read into while the socket writes the other.
 */
import type { FileHandle } from 'node:fs/promises';
import { DirectBody, type ResponseLink } from '../../src/direct-body.js';

/** What a plain read gives at a time; sending from its own buffers, the body reads up to 4 MiB (see bufferSize). */
const CHUNK = 1024 * 1024;
const SEND_CHUNK = 4 * 1024 * 1024;

export class FileBody extends DirectBody {
  private position: number;
  /** Exclusive. */
  private readonly end: number;

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

  protected override async send(to: ResponseLink, end: boolean): Promise<boolean> {
    const size = Math.min(this.bufferSize(SEND_CHUNK), this.end - this.position);
    const buffers: Buffer[] = [];
    const writing: Array<Promise<void> | undefined> = [undefined, undefined];
    for (let turn = 0; this.position < this.end; turn ^= 1) {
      await to.until(writing[turn]);
      if (this.destroyed || to.gone) return false;
      const buffer = (buffers[turn] ??= Buffer.allocUnsafeSlow(size));
      const n = Math.min(buffer.length, this.end - this.position);
      const { bytesRead } = await this.handle.read(buffer, 0, n, this.position);
      if (this.destroyed || to.gone) return false;
      if (bytesRead === 0) throw truncated(this.position, this.end);
      this.position += bytesRead;
      writing[turn] = to.writeOwned(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      await to.drained();
    }
    await to.until(Promise.all(writing));
    if (this.destroyed || to.gone) return false;
    return this.finish(to, end);
  }
}

function truncated(position: number, end: number): Error {
  return new Error(`blob file ended at ${position} bytes, before ${end}: it changed while being read`);
}
