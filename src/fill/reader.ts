/**
 * A client's view of a fill in progress: reads the spool file from its own position and
 * waits for the fill to catch up. It applies backpressure only to itself, so a stalled
 * client never holds back the fill or the other clients, and memory per client stays at
 * one chunk plus the stream's buffer.
 */
import { DirectBody, type ResponseLink } from '../direct-body.js';

const CHUNK = 256 * 1024;

/** What a reader may see of a fill: read-only, and the fill alone decides what is readable. */
export interface FillView {
  readonly error: Error | undefined;
  /** Bytes in the spool so far. */
  readonly written: number;
  /** How far a reader may go now under its hold policy, and the fill's length once known. */
  bounds(hold: FillHold): { limit: number; total: number | undefined };
  /** Up to `max` bytes at `position` from the fill's memory window, without copying. */
  fromMemory(position: number, max: number): Buffer | undefined;
  /** Positional read from the spool. */
  readAt(buffer: Buffer, position: number): Promise<number>;
  /** Resolves at the next progress or state change. */
  changed(): Promise<void>;
}

/**
 * What a reader holds back: nothing (a store's put() verifies on its own), the last byte until
 * the digest checks, or the last byte until the blob is committed to the store.
 */
export type FillHold = 'none' | 'verified' | 'committed';

export class FillReader extends DirectBody {
  private position: number;
  private readonly last: number | undefined;
  private pumping = false;
  private released = false;

  constructor(
    private readonly fill: FillView,
    start: number,
    end: number | undefined,
    private readonly onRelease: () => void,
    private readonly hold: FillHold,
  ) {
    super({ highWaterMark: CHUNK });
    this.position = start;
    this.last = end;
  }

  override _read(): void {
    if (this.pumping) return;
    this.pumping = true;
    // Every way out of the pump either ends the stream or marks it idle itself (see deliver).
    this.pump().catch((err: unknown) => {
      this.pumping = false;
      this.destroy(err as Error);
    });
  }

  /**
   * Pushes and reports whether to go on. When the consumer is full the pump must be marked
   * idle before push() returns control: the stream may ask for more (`_read`, on the next
   * tick) before the pump's promise settles, and a request that finds the pump still busy
   * would be lost.
   */
  private deliver(chunk: Buffer): boolean {
    if (this.push(chunk)) return true;
    this.pumping = false;
    return false;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.release();
    cb(err);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease();
  }

  protected override canSendDirectly(): boolean {
    return !this.pumping;
  }

  /**
   * Written into an HTTP response (see DirectBody): from the fill's memory window as it is
   * (nothing copied, and never reused), and from the spool into two buffers of its own. Ten
   * clients on one cold blob then cost no stream turn and no fresh buffer per chunk each.
   */
  protected override async send(to: ResponseLink, end: boolean): Promise<boolean> {
    const fill = this.fill;
    const buffers: Buffer[] = [];
    const writing: Array<Promise<void> | undefined> = [undefined, undefined];
    let turn = 0;
    const gone = () => this.destroyed || to.gone;
    for (;;) {
      if (gone()) return false;
      const step = this.next();
      if (step.kind === 'end') break;
      if (step.kind === 'memory') {
        this.position += step.chunk.length;
        to.write(step.chunk);
      } else if (step.kind === 'file') {
        await to.until(writing[turn]);
        if (gone()) return false;
        const buffer = (buffers[turn] ??= Buffer.allocUnsafeSlow(this.bufferSize(CHUNK)));
        const n = await fill.readAt(buffer.subarray(0, step.length), this.position);
        if (gone()) return false;
        if (fill.error) throw fill.error;
        if (n === 0) throw new Error(`the spool ended at ${this.position} bytes, before ${fill.written}`);
        this.position += n;
        writing[turn] = to.writeOwned(buffer.subarray(0, n));
        turn ^= 1;
      } else {
        await to.until(fill.changed());
        continue;
      }
      await to.drained();
    }
    await to.until(Promise.all(writing));
    if (gone()) return false;
    return this.finish(to, end);
  }

  /** Pushes until the consumer wants no more, the range ends, or the fill fails. */
  private async pump(): Promise<void> {
    const fill = this.fill;
    for (;;) {
      if (this.destroyed) return;
      const step = this.next();
      if (step.kind === 'end') {
        this.push(null);
        return;
      }
      if (step.kind === 'memory') {
        this.position += step.chunk.length;
        if (!this.deliver(step.chunk)) return;
      } else if (step.kind === 'file') {
        const buf = Buffer.allocUnsafe(step.length);
        const n = await fill.readAt(buf, this.position);
        if (this.destroyed) return;
        if (fill.error) throw fill.error;
        this.position += n;
        if (!this.deliver(n === buf.length ? buf : buf.subarray(0, n))) return;
      } else {
        await fill.changed();
      }
    }
  }

  /** What comes next at this reader's position: the end, bytes from the fill's memory, bytes to read from the spool, or a wait. */
  private next(): Step {
    const fill = this.fill;
    if (fill.error) throw fill.error;
    const { limit, total } = fill.bounds(this.hold);
    const last = Math.min(this.last ?? Infinity, (total ?? Infinity) - 1);
    if (this.position > last) return { kind: 'end' };
    const available = Math.min(limit, last + 1) - this.position;
    if (available <= 0) return { kind: 'wait' };
    const recent = fill.fromMemory(this.position, Math.min(available, CHUNK));
    if (recent) return { kind: 'memory', chunk: recent };
    // Past `written` the bytes are only in memory, and trim() keeps them there until written.
    const length = Math.min(available, fill.written - this.position, CHUNK);
    return length > 0 ? { kind: 'file', length } : { kind: 'wait' };
  }
}

type Step = { kind: 'end' } | { kind: 'wait' } | { kind: 'memory'; chunk: Buffer } | { kind: 'file'; length: number };
