/**
 * The charts' history: the cumulative counters sampled every `intervalMs` into a ring, handed
 * out as what happened in each interval. Sampling the counters (rather than counting events)
 * keeps the charts on the same numbers as `/metrics`.
 */
import { hitRatio } from './figures.js';
import { Ring } from './ring.js';

/** Cumulative counter values at one instant. */
export interface Sample {
  /** ms since the epoch */
  t: number;
  hits: number;
  misses: number;
  cacheBytes: number;
  upstreamBytes: number;
}

/** What happened between two samples; `t` is the end of the interval. */
export interface SeriesPoint extends Sample {
  hitRatio: number | null;
}

export interface SamplerOptions {
  read: () => Promise<Omit<Sample, 't'>>;
  intervalMs: number;
  /** Intervals kept. */
  points: number;
  now?: () => number;
  /** Told when a read fails; the sampler skips that tick and carries on. */
  onError?: (err: unknown) => void;
}

export interface Sampler {
  /** Takes one sample now (the timer calls this; tests may too). */
  sample(): Promise<void>;
  series(): SeriesPoint[];
  stop(): void;
}

export function createSampler({ read, intervalMs, points, now = Date.now, onError }: SamplerOptions): Sampler {
  // One more sample than intervals: N intervals lie between N + 1 samples.
  const ring = new Ring<Sample>(points + 1);
  let pending: Promise<void> | undefined;

  function sample(): Promise<void> {
    // A slow registry read must not pile up behind the timer.
    pending ??= read()
      .then((values) => ring.push({ t: now(), ...values }), onError)
      .finally(() => {
        pending = undefined;
      });
    return pending;
  }

  const timer = setInterval(() => void sample(), intervalMs);
  // A status page must never keep a process alive that is otherwise done.
  timer.unref();
  void sample();

  return {
    sample,
    series() {
      const all = ring.toArray();
      return all.slice(1).map((s, i) => {
        const prev = all[i]!;
        // Counters only grow; a registry reset must read as a quiet interval, not a negative one.
        const delta = (k: keyof Omit<Sample, 't'>) => Math.max(0, s[k] - prev[k]);
        const hits = delta('hits');
        const misses = delta('misses');
        return { t: s.t, hits, misses, hitRatio: hitRatio(hits, misses), cacheBytes: delta('cacheBytes'), upstreamBytes: delta('upstreamBytes') };
      });
    },
    stop() {
      clearInterval(timer);
    },
  };
}
