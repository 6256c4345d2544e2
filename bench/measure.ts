/**
 * The measurements: curl as the client (it writes to /dev/null in C and does not compete with
 * node for a core), one pull or many at once (up to 300 transfers in one curl process), wrk for
 * requests per second, a sampler of a process's resident memory, the CPU time of a server's
 * processes from /proc, and the median/min/max of repeated runs.
 */
import { readdir, readFile } from 'node:fs/promises';
import { run, which } from '../test/helpers/tools.js';

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
    return parsePull(stdout, expectedBytes);
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

const parsePull = (line: string, expectedBytes: number): Pull => {
  const [status = '0', bytes = '0', seconds = '0', cache = ''] = line.trim().split(' ');
  const result = { status: Number(status), bytes: Number(bytes), seconds: Number(seconds), cache };
  const ok = result.status === 200 && result.bytes === expectedBytes && result.seconds > 0;
  return { ok, ...result, ...(ok ? {} : { error: `HTTP ${status}, ${bytes} of ${expectedBytes} bytes` }) };
};

/**
 * `n` (at most 300, curl's limit) GETs of `url` at once from ONE curl process (`--parallel
 * --parallel-immediate`: every connection opened at the start), for crowds too large for a
 * curl process each.
 */
export async function pullCrowd(url: string, n: number, expectedBytes: number, timeoutSeconds: number): Promise<ParallelPull> {
  if (n > 300) throw new Error('curl runs at most 300 transfers at once');
  const args = ['-sS', '--noproxy', '*', '--parallel', '--parallel-immediate', '--parallel-max', String(n), '-w', `${FORMAT}\\n`];
  args.push('--connect-timeout', '10', '--max-time', String(timeoutSeconds));
  for (let i = 0; i < n; i++) args.push('-o', '/dev/null', url);
  const started = performance.now();
  let stdout = '';
  let error: string | undefined;
  try {
    ({ stdout } = await run('curl', args, { timeoutMs: (timeoutSeconds + 10) * 1000 }));
  } catch (e) {
    error = (e as Error).message.split('\n').slice(0, 3).join(' ');
  }
  const seconds = (performance.now() - started) / 1000;
  const clients = stdout.split('\n').filter(Boolean).map((line) => parsePull(line, expectedBytes));
  while (clients.length < n) clients.push({ ok: false, status: 0, bytes: 0, seconds: 0, cache: '', error: error ?? 'no result from curl' });
  return { ok: clients.every((c) => c.ok), clients, seconds, bytes: clients.reduce((sum, c) => sum + c.bytes, 0) };
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

/** A figure of /proc/<pid>/status, in KiB. */
export async function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(m[1]);
}

/** The fields of /proc/<pid>/stat from field 3 (state) on: index 1 is the parent's pid, 11 and 12 utime and stime. */
async function statFields(pid: number): Promise<string[] | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // After "pid (comm) " come fields 3 onwards; comm may hold spaces and parentheses, hence the last ')'.
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds (user + system, every thread) that process `pid` has used so far, from /proc/<pid>/stat. Linux only. */
export async function cpuSeconds(pid: number): Promise<number> {
  const fields = await statFields(pid);
  if (!fields) throw new Error(`no process ${pid}`);
  // utime and stime are fields 14 and 15, in USER_HZ ticks (100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const allPids = async (): Promise<number[]> => (await readdir('/proc')).filter((d) => /^\d+$/.test(d)).map(Number);

/**
 * The processes whose command line contains `needle` (a config file's path, say). How a server
 * is found when the helper that started it does not say its pid, or when it ran through a
 * wrapper or `setsid`, which may fork: the pid of the program itself is then not the child's.
 */
export async function pidsByCommandLine(needle: string): Promise<number[]> {
  const found = await Promise.all(
    (await allPids()).map(async (pid) => {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      return cmdline.replaceAll('\0', ' ').includes(needle) && pid !== process.pid ? [pid] : [];
    }),
  );
  return found.flat();
}

/**
 * CPU seconds (user + system) used so far by `roots` and every process below them (nginx's
 * master and its workers, say), summed. A child that has exited and been waited for is in
 * its parent's cutime/cstime, which this leaves out: servers keep their processes.
 */
export async function treeCpuSeconds(roots: readonly number[]): Promise<number> {
  const stats = new Map<number, string[]>();
  await Promise.all(
    (await allPids()).map(async (pid) => {
      const fields = await statFields(pid);
      if (fields) stats.set(pid, fields);
    }),
  );
  const children = new Map<number, number[]>();
  for (const [pid, fields] of stats) {
    const parent = Number(fields[1]);
    children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const seen = new Set<number>();
  const queue = [...roots];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    if (seen.has(pid)) continue;
    seen.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  let ticks = 0;
  for (const pid of seen) {
    const fields = stats.get(pid);
    if (fields) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

/** CPU seconds (user + system) this process has used so far. */
export const ownCpuSeconds = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

export interface WrkResult {
  ok: boolean;
  requestsPerSecond: number;
  requests: number;
  seconds: number;
  /** Responses other than 2xx or 3xx, and socket errors (connect, read, write, timeout), as wrk counts them. */
  non2xx: number;
  socketErrors: number;
  error?: string;
}

/** Whether wrk is installed: the requests-per-second cases are skipped without it. */
export const hasWrk = (): boolean => which('wrk') !== undefined;

/** `wrk -t<threads> -c<connections> -d<seconds>s` on `url`, with `headers`; never throws. */
export async function wrk(
  url: string,
  { threads = 2, connections = 32, seconds = 10, headers = {} }: { threads?: number; connections?: number; seconds?: number; headers?: Record<string, string> } = {},
): Promise<WrkResult> {
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--timeout', '5s'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const failed = (error: string): WrkResult => ({ ok: false, requestsPerSecond: 0, requests: 0, seconds: 0, non2xx: 0, socketErrors: 0, error });
  let stdout: string;
  try {
    ({ stdout } = await run('wrk', args, { timeoutMs: (seconds + 20) * 1000 }));
  } catch (e) {
    return failed((e as Error).message.split('\n').slice(0, 3).join(' '));
  }
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : undefined;
  };
  const rps = num(/^Requests\/sec:\s+([\d.]+)/m);
  const requests = num(/^\s*(\d+) requests in/m);
  const took = /requests in ([\d.]+)(ms|s|m)\b/.exec(stdout);
  if (rps === undefined || requests === undefined || !took) return failed(`wrk printed no figures: ${stdout.slice(0, 300)}`);
  const non2xx = num(/Non-2xx or 3xx responses:\s+(\d+)/) ?? 0;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const socketErrors = socket ? socket.slice(1).reduce((sum, v) => sum + Number(v), 0) : 0;
  const scale = took[2] === 'ms' ? 1 / 1000 : took[2] === 'm' ? 60 : 1;
  const ok = non2xx === 0 && socketErrors === 0 && requests > 0;
  return {
    ok,
    requestsPerSecond: rps,
    requests,
    seconds: Number(took[1]) * scale,
    non2xx,
    socketErrors,
    ...(ok ? {} : { error: `${non2xx} responses not 2xx/3xx, ${socketErrors} socket errors of ${requests} requests` }),
  };
}

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
