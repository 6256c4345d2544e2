import type { EvictionPass } from './pass.js';

/**
 * One pass at a time, on a timer: every `interval`, at once while the last pass stopped at its
 * batch limit, and sooner when asked (the store grew past its budget). A pass asked for while
 * one runs joins it.
 */
export class PassScheduler {
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private running: Promise<EvictionPass> | undefined;
  private closed = false;

  constructor(
    private readonly pass: () => Promise<EvictionPass>,
    private readonly interval: number,
    private readonly onError?: (err: unknown) => void,
  ) {}

  schedule(delay = this.interval): void {
    if (this.closed) return;
    const at = Date.now() + delay;
    if (this.timer && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.run().then(
        (r) => this.schedule(r.more ? 0 : this.interval),
        () => this.schedule(),
      );
    }, delay);
    this.timer.unref();
  }

  run(): Promise<EvictionPass> {
    this.running ??= this.pass()
      .catch((err: unknown) => {
        this.onError?.(err);
        throw err;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Stops the timer and waits for the pass in progress. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => {});
  }
}
