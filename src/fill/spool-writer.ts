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

/**
 * The bound on what waits in memory for the spool, and so the largest batch. 2 MiB measured
 * better than 4 and 1 (paired cold pulls of 512 MiB, with fill.ts's window at 2 MiB too): against
 * 4, one client 441 -> 524 MB/s at 2.96 -> 2.63 CPU s/GB (3 of 4 pairs better), ten clients peak
 * RSS 157 -> 135 MB (3 pairs); against 1, one client 473 -> 523 MB/s. With the window back at 4
 * MiB, paired against it at 2: one client 527 against 534 MB/s, 2.57 against 2.48 s/GB; ten
 * clients peak 136 against 137 MB. Likely reasons, not measured apart: a batch is
 * written and hashed while still in the CPU's cache, and fewer socket buffers live long enough
 * to reach V8's old generation, which only a full GC clears.
 */
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
