/**
 * Counter increments summed in plain maps and handed to prom-client when the counter is read (a
 * scrape, the status page). prom-client's `inc` with labels validates them, builds a string key
 * and looks it up in an object on every call; at three counters per request that was measurable
 * on a flood of small requests. Here an increment is two or three map lookups by the label
 * values themselves, which are short constant strings.
 */
export class Tally {
  private readonly counts = new Map<string, Map<string, Map<string, number>>>();

  /** At most three label names: every counter of the mirror has three or fewer. */
  constructor(private readonly labelNames: readonly string[]) {
    if (labelNames.length === 0 || labelNames.length > 3) throw new RangeError('a tally has one to three labels');
  }

  /** Counts `n` for these label values, given in the order of the label names. */
  add(n: number, a: string, b = '', c = ''): void {
    let second = this.counts.get(a);
    if (!second) this.counts.set(a, (second = new Map()));
    let third = second.get(b);
    if (!third) second.set(b, (third = new Map()));
    third.set(c, (third.get(c) ?? 0) + n);
  }

  /**
   * Hands every sum counted since the last drain to `inc`, with its labels, and starts again
   * from zero. The maps stay: label values are few (route kinds, methods, statuses), and the
   * next request finds its entry in place.
   */
  drain(inc: (labels: Record<string, string>, n: number) => void): void {
    const [first, second, third] = this.labelNames;
    for (const [a, seconds] of this.counts) {
      for (const [b, thirds] of seconds) {
        for (const [c, n] of thirds) {
          if (n === 0) continue;
          thirds.set(c, 0);
          const labels: Record<string, string> = { [first!]: a };
          if (second !== undefined) labels[second] = b;
          if (third !== undefined) labels[third] = c;
          inc(labels, n);
        }
      }
    }
  }
}
