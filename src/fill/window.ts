/**
 * The newest bytes of a fill, kept in memory so that readers following it closely (the usual
 * case) are served without reading back from the spool: one copy of the window per fill,
 * whatever the number of readers. Readers further behind read the file.
 */
export class RecentWindow {
  private buffers: Buffer[] = [];
  private start = 0;
  private bytes = 0;

  /** `size`: how much of the newest data it keeps once that data is on disk. */
  constructor(private readonly size: number) {}

  push(batch: readonly Buffer[]): void {
    for (const b of batch) {
      this.buffers.push(b);
      this.bytes += b.length;
    }
  }

  /** Drops the oldest buffers beyond the window, but never one that is not in the file yet. */
  trim(written: number): void {
    for (let head = this.buffers[0]; head; head = this.buffers[0]) {
      if (this.bytes - head.length < this.size || this.start + head.length > written) break;
      this.buffers.shift();
      this.bytes -= head.length;
      this.start += head.length;
    }
  }

  /** Up to `max` bytes at `position`, without copying; undefined when they are not in the window. */
  read(position: number, max: number): Buffer | undefined {
    if (position < this.start || position >= this.start + this.bytes) return undefined;
    let offset = this.start;
    for (const b of this.buffers) {
      if (position < offset + b.length) {
        const from = position - offset;
        return b.subarray(from, Math.min(b.length, from + max));
      }
      offset += b.length;
    }
    return undefined;
  }

  /** Lets go of every buffer: the fill is over. */
  clear(): void {
    this.start += this.bytes;
    this.buffers = [];
    this.bytes = 0;
  }
}
