/**
 * The measurements: curl as the client (it writes to /dev/null in C and does not compete with
 * node for a core), one pull or many at once, a sampler of a process's resident memory, and
 * the median/min/max of repeated runs.
 */
import { readFile } from 'node:fs/promises';
import { run } from '../test/helpers/tools.js';

export interface Pull {
  ok: boolean;
  status: number;
  bytes: number;
  seconds: number;
  /** The mirror's X-Mirror-Cache header (HIT, MISS, JOIN), empty elsewhere. */
  cache: string;
  error?: string;
}

const FORMAT = '%{http_code} %{size_download} %{time_total} %header{x-mirror-cache}';

/** One GET of `url` with curl; never throws: a failure is a Pull with `ok: false`. */
export async function pull(url: string, expectedBytes: number, timeoutSeconds: number): Promise<Pull> {
  const args = ['-sS', '--noproxy', '*', '-o', '/dev/null', '-w', FORMAT, '--connect-timeout', '5', '--max-time', String(timeoutSeconds), url];
  try {
    // The guard behind curl's own --max-time.
    const { stdout } = await run('curl', args, { timeoutMs: (timeoutSeconds + 10) * 1000 });
    const [status = '0', bytes = '0', seconds = '0', cache = ''] = stdout.trim().split(' ');
    const result = { status: Number(status), bytes: Number(bytes), seconds: Number(seconds), cache };
    const ok = result.status === 200 && result.bytes === expectedBytes && result.seconds > 0;
    return { ok, ...result, ...(ok ? {} : { error: `HTTP ${status}, ${bytes} of ${expectedBytes} bytes` }) };
  } catch (e) {
    return { ok: false, status: 0, bytes: 0, seconds: 0, cache: '', error: (e as Error).message.split('\n').slice(0, 3).join(' ') };
  }
}

export interface ParallelPull {
  ok: boolean;
  clients: Pull[];
  /** Wall time from starting the first curl to the end of the last. */
  seconds: number;
  bytes: number;
}

/** `n` curls of `url` started together. */
export async function pullMany(url: string, n: number, expectedBytes: number, timeoutSeconds: number): Promise<ParallelPull> {
  const started = performance.now();
  const clients = await Promise.all(Array.from({ length: n }, () => pull(url, expectedBytes, timeoutSeconds)));
  const seconds = (performance.now() - started) / 1000;
  return { ok: clients.every((c) => c.ok), clients, seconds, bytes: clients.reduce((sum, c) => sum + c.bytes, 0) };
}

/** MB/s with MB = 10^6 bytes. */
export const mbps = (bytes: number, seconds: number): number => bytes / seconds / 1e6;

export interface MemoryPeak {
  /** VmRSS when sampling started (the idle mirror). */
  startKiB: number;
  /** The kernel's high-water mark of resident memory (VmHWM), read after the run. */
  hwmKiB: number;
  /** The largest VmRSS seen while sampling. */
  sampledPeakKiB: number;
  samples: number;
}

/** Samples VmRSS of `pid` every `everyMs` until stop(), which also reads VmHWM. Linux only. */
export async function sampleMemory(pid: number, everyMs = 50): Promise<{ stop(): Promise<MemoryPeak> }> {
  const startKiB = await statusKiB(pid, 'VmRSS');
  let peak = startKiB;
  let samples = 0;
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    reading = true;
    void statusKiB(pid, 'VmRSS')
      .then((rss) => {
        samples++;
        peak = Math.max(peak, rss);
      })
      .catch(() => {})
      .finally(() => {
        reading = false;
      });
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      const hwmKiB = await statusKiB(pid, 'VmHWM');
      return { startKiB, hwmKiB, sampledPeakKiB: Math.max(peak, await statusKiB(pid, 'VmRSS')), samples };
    },
  };
}

async function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(m[1]);
}

/** CPU seconds (user + system) that process `pid` has used so far, from /proc/<pid>/stat. Linux only. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // After "pid (comm) " come fields 3 onwards; utime and stime are fields 14 and 15, in USER_HZ ticks (100 on Linux).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds (user + system) this process has used so far. */
export const ownCpuSeconds = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

export interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median, min and max; undefined when there is nothing to summarize. */
export function stats(values: number[]): Stats | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length };
}

/** Runs `fn` `times` times in a row. */
export async function repeat<T>(times: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < times; i++) out.push(await fn(i));
  return out;
}
