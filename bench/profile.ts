/**
 * Summaries of a V8 `.cpuprofile` (what `node --cpu-prof` writes), so that `npm run bench --
 * --cpu-prof` and `npm run bench:profile` say where the mirror's time went without opening a
 * profiler UI: the functions that the samples landed in most (self time), and the share of
 * each stage (undici receiving, sha256, the spool write, serving…), optionally only over a
 * window of time. A native function is named with the code that called it (the mirror's own,
 * where it is near), since `read` alone says little.
 *
 * The profile's timestamps are microseconds of the monotonic clock, the one `process.hrtime`
 * reads in any process on the machine: the bench notes the window of a pull with
 * `process.hrtime.bigint() / 1000n` and the mirror's samples in it are the pull's.
 */
import { readFile } from 'node:fs/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: CallFrame; children?: number[] }>;
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A window of monotonic time in µs (`process.hrtime.bigint() / 1000n`); the whole profile when absent. */
export interface Window {
  fromUs: number;
  toUs: number;
}

interface Loaded {
  nodes: Map<number, CpuProfile['nodes'][number]>;
  parents: Map<number, number>;
  /** Each sample in the window: its node and its weight (the time to the next sample), µs. */
  samples: Array<{ id: number; us: number }>;
}

async function load(file: string, window?: Window): Promise<Loaded> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n.id);
  const samples: Loaded['samples'] = [];
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    // timeDeltas[i] is the time from the previous sample to this one; weigh each sample by the next delta, as DevTools does.
    const us = profile.timeDeltas[i + 1] ?? 0;
    if (!window || (t >= window.fromUs && t <= window.toUs)) samples.push({ id, us });
  });
  return { nodes, parents, samples };
}

const name = (f: CallFrame): string => {
  const place = f.url ? ` ${f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'}${place}`;
};

/** The samples' time (µs) summed by `keyOf` their node, and in all. */
function tally(samples: Loaded['samples'], keyOf: (id: number) => string): { by: Map<string, number>; total: number } {
  const by = new Map<string, number>();
  let total = 0;
  for (const { id, us } of samples) {
    const key = keyOf(id);
    by.set(key, (by.get(key) ?? 0) + us);
    total += us;
  }
  return { by, total };
}

/** The `top` functions by self time, one line each: ms, share of the samples, name and place. */
export async function summarizeProfile(file: string, top = 8, window?: Window): Promise<string[]> {
  const { nodes, parents, samples } = await load(file, window);

  const label = (id: number): string => {
    const frame = nodes.get(id)!.callFrame;
    if (frame.url || frame.functionName.startsWith('(')) return name(frame);
    let caller: CallFrame | undefined;
    for (let p = parents.get(id), depth = 0; p !== undefined && depth < 8; p = parents.get(p), depth++) {
      const f = nodes.get(p)!.callFrame;
      if (!f.url) continue;
      caller ??= f;
      if (!f.url.startsWith('node:')) {
        caller = f;
        break;
      }
    }
    return `${frame.functionName} (native, from ${caller ? name(caller) : 'the event loop'})`;
  };

  const { by: self, total } = tally(samples, label);
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, us]) => `${(us / 1000).toFixed(0).padStart(6)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
}

/**
 * The stages a sample is put in: the innermost frame of its stack that one of these names
 * decides (frames of Node's streams, events, timers and native functions name none, so the
 * code that called them decides). The profiler samples the main thread only: the spool's
 * writes and the blob file's reads run on libuv's thread pool, and what shows here is their
 * dispatch and completion, not the syscalls; sha256 runs on the main thread.
 */
const STAGES: Array<[string, (f: CallFrame) => boolean]> = [
  ['sha256 hashing', (f) => f.url === 'node:internal/crypto/hash' || /\/src\/digest\.js$/.test(f.url)],
  ['file reads (serving from storage)', (f) => isFs(f) && /read/i.test(f.functionName)],
  ['spool write (fs, writev)', (f) => isFs(f) || /\/src\/fill\/spool-writer\.js$/.test(f.url)],
  ['undici receive / llhttp', (f) => f.url.includes('/node_modules/undici/') || f.url.startsWith('wasm://') || /\/src\/upstream\//.test(f.url)],
  ['fill reader / handing out', (f) => /\/src\/fill\//.test(f.url)],
  ['logging, metrics, events', (f) => /\/node_modules\/(pino|prom-client|thread-stream|sonic-boom)/.test(f.url) || /\/src\/(events|metrics|logging)\//.test(f.url)],
  ['S3 adapter / AWS SDK', (f) => /\/node_modules\/@(aws-sdk|smithy)\//.test(f.url) || /\/adapters\/s3\//.test(f.url)],
  [
    'koa / http serving, and the rest of the mirror',
    (f) =>
      /\/node_modules\/(koa|@koa|koa-compose|range-parser|zod)\//.test(f.url) ||
      /\/dist\/(middleware|adapters)\//.test(f.url) ||
      /\/dist\/src\//.test(f.url) ||
      f.url.startsWith('node:_http_') ||
      f.url === 'node:http',
  ],
  ['socket I/O (net)', (f) => f.url === 'node:net' || f.url === 'node:internal/stream_base_commons'],
];

function isFs(f: CallFrame): boolean {
  return f.url === 'node:fs' || f.url === 'node:fs/promises' || f.url.startsWith('node:internal/fs/') || /\/adapters\/fs\//.test(f.url);
}

const SPECIAL: Record<string, string> = {
  '(garbage collector)': 'GC',
  '(idle)': 'idle / waiting',
  '(program)': 'V8 and native, unattributed (program)',
};

export interface StageShare {
  stage: string;
  ms: number;
  /** Of all the samples in the window, idle included. */
  percent: number;
  /** Of the busy samples (idle left out); undefined for idle itself. */
  busyPercent?: number;
}

/** Where the time went, by stage, over `window` (the whole profile when absent), largest first. */
export async function profileStages(file: string, window?: Window): Promise<{ totalMs: number; stages: StageShare[] }> {
  const { nodes, parents, samples } = await load(file, window);
  const memo = new Map<number, string>();
  const stageOf = (id: number): string => {
    const known = memo.get(id);
    if (known) return known;
    const leaf = nodes.get(id)!.callFrame.functionName;
    let stage = SPECIAL[leaf];
    for (let n: number | undefined = id; !stage && n !== undefined; n = parents.get(n)) {
      const frame = nodes.get(n)!.callFrame;
      stage = STAGES.find(([, match]) => match(frame))?.[0];
    }
    stage ??= 'other (streams, timers, start-up)';
    memo.set(id, stage);
    return stage;
  };
  const { by: byStage, total } = tally(samples, stageOf);
  const idle = byStage.get(SPECIAL['(idle)']!) ?? 0;
  const stages = [...byStage]
    .sort((a, b) => b[1] - a[1])
    .map(([stage, us]) => ({
      stage,
      ms: us / 1000,
      percent: total ? (100 * us) / total : 0,
      ...(stage === SPECIAL['(idle)'] || total === idle ? {} : { busyPercent: (100 * us) / (total - idle) }),
    }));
  return { totalMs: total / 1000, stages };
}
