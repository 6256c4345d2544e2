/**
 * The upstream behind a throttled link (throttle.ts: a token-bucket TCP proxy in this process),
 * at 1 Gbit/s (125 MB/s) and at 2.5 Gbit/s (312.5 MB/s): the small layers (10 MB each) and the
 * big one, pulled by one client straight through the link (direct), then cold through a fresh
 * mirror whose upstream is that link (warmed up first by a pull of another, 4 KB, blob). The
 * ratio mirror cold / direct then says what the mirror costs where the network, not loopback,
 * is the bottleneck, as it is in front of a real registry. One 10 MB pull lasts 30 to 80 ms, so
 * a single one per round swung its ratio by a quarter either way: each small layer is pulled
 * once, in turn, and the round's figure is over all of them.
 */
import { mirrorIn, withDataDir, type Bench, type Setup } from './cases.js';
import { mbps, pull } from './measure.js';
import { RATES, singleRun, type Round, type Run, type ThrottledKey } from './report.js';
import { waitStored } from './servers.js';
import { startThrottle, type Throttle } from './throttle.js';

export interface Blob {
  repository: string;
  digest: string;
  size: number;
}

export interface ThrottledSetup {
  /** Layers of one small size, each pulled once a round: the small case is their sum. */
  small: Blob[];
  /** One link per rate, started for the whole run. */
  links: Array<{ key: (typeof RATES)[number]['key']; throttle: Throttle }>;
  /**
   * Pulled through each fresh mirror before its cold cases (the 4 KB blob): a long-running
   * mirror has its code compiled and its upstream connection open, a process just started has
   * neither, and on a 10 MB pull that would weigh more than the fill itself.
   */
  warmUp: Blob;
}

/** A throttled link to `upstreamUrl` for each rate; `defer` stops them. */
export async function startLinks(upstreamUrl: string, defer: (fn: () => Promise<unknown>) => void): Promise<ThrottledSetup['links']> {
  const links: ThrottledSetup['links'] = [];
  for (const rate of RATES) {
    const throttle = await startThrottle(new URL(upstreamUrl), rate.bytesPerSecond);
    defer(() => throttle.stop());
    links.push({ key: rate.key, throttle });
  }
  return links;
}

const path = (b: Blob): string => `/v2/${b.repository}/blobs/${b.digest}`;

export async function throttledCases(s: Setup, t: ThrottledSetup, b: Bench, i: number): Promise<Round> {
  const big: Blob = { repository: s.repository, digest: s.digest, size: s.size };
  const one = async (base: string, blob: Blob): Promise<Run> => singleRun(await pull(`${base}${path(blob)}`, blob.size, s.timeouts.one));
  const each = async (blobs: Blob[], fn: (blob: Blob) => Promise<Run>): Promise<Run> => {
    const runs: Run[] = [];
    for (const blob of blobs) runs.push(await fn(blob));
    return summed(runs);
  };
  const out: Round = {};
  for (const { key, throttle } of t.links) {
    const direct = (blob: Blob): Promise<Run> => b.measured({ server: s.upstream.pids, digest: blob.digest }, () => one(throttle.url, blob));
    out[`${key}SmallDirect` satisfies ThrottledKey] = await each(t.small, direct);
    out[`${key}BigDirect` satisfies ThrottledKey] = await direct(big);
    await withDataDir(s, `throttled-${key}-${i + 1}`, async (dataDir) => {
      const mirror = await mirrorIn(s, dataDir, `upstream at ${key}, cold, round ${i + 1}`, undefined, throttle.url);
      try {
        const warm = await one(mirror.url, t.warmUp);
        if (!warm.ok) throw new Error(`warming the mirror up through the ${key} link: ${warm.error}`);
        const cold = (blob: Blob): Promise<Run> =>
          b.measured({ server: [mirror.pid], digest: blob.digest, settled: () => waitStored(`${mirror.url}${path(blob)}`) }, () => one(mirror.url, blob));
        out[`${key}SmallMirror` satisfies ThrottledKey] = await each(t.small, cold);
        out[`${key}BigMirror` satisfies ThrottledKey] = await cold(big);
      } finally {
        await mirror.stop();
      }
    });
  }
  return out;
}

/** Pulls taken one after another as one run: their bytes over their time, their CPU and GETs added up. */
function summed(runs: Run[]): Run {
  const total = (f: (r: Run) => number | undefined): number | undefined =>
    runs.every((r) => f(r) !== undefined) ? runs.reduce((sum, r) => sum + f(r)!, 0) : undefined;
  const seconds = total((r) => r.seconds)!;
  const bytes = total((r) => r.bytes)!;
  const failed = runs.find((r) => !r.ok);
  const [serverCpu, upstreamCpu, upstreamGets] = [total((r) => r.serverCpu), total((r) => r.upstreamCpu), total((r) => r.upstreamGets)];
  return {
    ok: !failed,
    seconds,
    bytes,
    ...(failed ? { error: failed.error } : { mbps: mbps(bytes, seconds) }),
    ...(serverCpu === undefined ? {} : { serverCpu }),
    ...(upstreamCpu === undefined ? {} : { upstreamCpu }),
    ...(upstreamGets === undefined ? {} : { upstreamGets }),
  };
}
