/**
 * The fill's sink: counts each chunk against the declared size as it arrives and writes to the
 * spool file in batches (the digest is computed from the file, off the main thread: spool-hash.ts).
 * While one write is in the kernel, the chunks that arrive meanwhile queue up (to the stream's
 * high-water mark, the bound on memory) and go out together in one `writev`: one round trip
 * to the thread pool per batch instead of one per 64 KiB network chunk.
 */
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import type { SizeCheck } from '../digest.js';

/** The bound on what waits for the spool, in memory; its size is measured with fill.ts's RECENT_WINDOW. */
const HIGH_WATER_MARK = 2 * 1024 * 1024;

export class SpoolWriter extends Writable {
  constructor(
    private readonly handle: FileHandle,
    private readonly sizeCheck: Pick<SizeCheck, 'update'>,
    /**
     * Called with each batch once it is counted, and the offset its end reaches, before it goes to
     * the file: readers may take it from memory. A throw refuses the batch, which then never
     * reaches the file, and fails the write.
     */
    private readonly onReceived: (batch: Buffer[], end: number) => void,
    /** Called after each batch is in the file, with the new end offset. */
    private readonly onWritten: (end: number) => void,
    private position = 0,
  ) {
    super({ highWaterMark: HIGH_WATER_MARK });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeBatch([chunk]).then(() => callback(), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.writeBatch(chunks.map((c) => c.chunk)).then(() => callback(), callback);
  }

  private async writeBatch(buffers: Buffer[]): Promise<void> {
    // Count before writing: a too-long body fails here, before its excess reaches the file.
    for (const b of buffers) this.sizeCheck.update(b);
    let total = 0;
    for (const b of buffers) total += b.length;
    this.onReceived(buffers, this.position + total);
    let { bytesWritten } = await this.handle.writev(buffers, this.position);
    // A regular file takes the whole batch; should it not, the rest goes one buffer at a time.
    while (bytesWritten < total) {
      let skip = bytesWritten;
      const rest: Buffer[] = [];
      for (const b of buffers) {
        if (skip >= b.length) skip -= b.length;
        else {
          rest.push(skip ? b.subarray(skip) : b);
          skip = 0;
        }
      }
      const more = await this.handle.writev(rest, this.position + bytesWritten);
      if (more.bytesWritten === 0) throw new Error('spool write made no progress');
      bytesWritten += more.bytesWritten;
    }
    this.position += total;
    this.onWritten(this.position);
  }
}
