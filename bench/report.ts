/**
 * The results: every case's runs summarized (median and range of MB/s, or of requests/s, and
 * of the serving process's CPU seconds per GB), the ratios the project tracks, each computed
 * within a round and then summarized, the mirror's memory, and notes (upstream GETs, cache
 * headers, S3 and replicas); printed as Markdown and written as JSON with every run.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SERVER_NODE_FLAGS } from '../src/node-flags.js';
import { mbps, stats, type MemoryPeak, type ParallelPull, type Pull, type Stats, type WrkResult } from './measure.js';

export interface Run {
  ok: boolean;
  /** Throughput of a pull (MB = 10^6 bytes). */
  mbps?: number;
  /** Requests per second of a wrk run. */
  rps?: number;
  seconds: number;
  bytes: number;
  /** wrk runs: requests completed. */
  requests?: number;
  /** With many clients: each one's own time. */
  clientSeconds?: number[];
  /** X-Mirror-Cache of each client, for mirror runs. */
  cache?: string[];
  /** Upstream blob GETs while this run lasted. */
  upstreamGets?: number;
  /** wrk runs: the upstream's GETs and HEADs of the path while this run lasted. */
  upstreamRequests?: number;
  /** CPU seconds (user + system) of the serving process(es) from the first request until the run settled (a cold one: stored). */
  serverCpu?: number;
  /** CPU seconds of the upstream registry meanwhile (for a direct run, the same as serverCpu). */
  upstreamCpu?: number;
  memory?: MemoryPeak;
  /** The mirror's VmRSS at idle, a second after it answered its first health check. */
  idleKiB?: number;
  /** For a cold run: how long after the last byte the server had the blob in its storage (mirror: synced and renamed; S3: committed). */
  storedAfterMs?: number;
  /** CPU seconds spent while the client pulled: by the mirror, and by s3rver (the bench's own process). */
  cpu?: { mirror: number; s3rver: number };
  /** Multipart uploads s3rver still held on disk once the blob was committed. */
  uploadsLeft?: number;
  /** For a cold run on S3: ms from the last byte to the CompleteMultipartUpload reaching s3rver. */
  completeSentAfterMs?: number;
  /** Two-replica runs: each replica's memory while the clients pulled. */
  replicas?: { url: string; memory: MemoryPeak }[];
  /** Two-replica runs: uploads of the blob S3 saw start (PutObject or CreateMultipartUpload). */
  uploads?: number;
  error?: string;
}

export function singleRun(p: Pull): Run {
  return {
    ok: p.ok,
    seconds: p.seconds,
    bytes: p.bytes,
    ...(p.ok ? { mbps: mbps(p.bytes, p.seconds) } : { error: p.error }),
    ...(p.cache ? { cache: [p.cache] } : {}),
  };
}

export function parallelRun(p: ParallelPull): Run {
  const caches = p.clients.map((c) => c.cache).filter(Boolean);
  const error = p.clients.find((c) => !c.ok)?.error;
  return {
    ok: p.ok,
    seconds: p.seconds,
    bytes: p.bytes,
    ...(p.ok ? { mbps: mbps(p.bytes, p.seconds) } : { error: `${p.clients.filter((c) => !c.ok).length} clients failed: ${error}` }),
    clientSeconds: p.clients.map((c) => c.seconds),
    ...(caches.length ? { cache: caches } : {}),
  };
}

export function wrkRun(w: WrkResult, bytesEach: number): Run {
  return {
    ok: w.ok,
    seconds: w.seconds,
    requests: w.requests,
    bytes: w.requests * bytesEach,
    ...(w.ok ? { rps: w.requestsPerSecond } : { error: w.error }),
  };
}

/** `floor`: runs whose only figure is memory, shown in the memory table alone. */
type Section = 'blob' | 'requests' | 'throttled' | 'crowd' | 'floor';

interface CaseInfo {
  label: string;
  section: Section;
  /** How many clients at once: a number, or 'many' for the setup's `clients`. */
  clients: number | 'many';
}

/** The throttled links: 1 Gbit/s and 2.5 Gbit/s. */
export const RATES = [
  { key: '1g', label: '1 Gbit/s', bytesPerSecond: 125e6 },
  { key: '2g5', label: '2.5 Gbit/s', bytesPerSecond: 312.5e6 },
] as const;
export type RateKey = (typeof RATES)[number]['key'];
export type ThrottledKey = `${RateKey}${'Small' | 'Big'}${'Direct' | 'Mirror'}`;

const throttledCases = Object.fromEntries(
  RATES.flatMap((r) =>
    (['Small', 'Big'] as const).flatMap((size) =>
      (['Direct', 'Mirror'] as const).map((who) => [
        `${r.key}${size}${who}`,
        {
          label: `${r.label}, ${size === 'Small' ? 'small layers' : 'big layer'}, ${who === 'Direct' ? 'direct' : 'mirror cold'}`,
          section: 'throttled',
          clients: 1,
        },
      ]),
    ),
  ),
) as Record<ThrottledKey, CaseInfo>;

/** The cases, in table order; the `10` ones are run by `clients` curls at once. */
const CASES = {
  direct: { label: 'direct (upstream docker-registry)', section: 'blob', clients: 1 },
  nginx: { label: 'nginx sendfile', section: 'blob', clients: 1 },
  proxyCold: { label: 'distribution proxy-mode cold', section: 'blob', clients: 1 },
  proxyWarm: { label: 'distribution proxy-mode warm', section: 'blob', clients: 1 },
  mirrorCold: { label: 'mirror cold', section: 'blob', clients: 1 },
  mirrorWarm: { label: 'mirror warm', section: 'blob', clients: 1 },
  s3Cold: { label: 'mirror, blobs on S3, cold', section: 'blob', clients: 1 },
  s3Warm: { label: 'mirror, blobs on S3, warm', section: 'blob', clients: 1 },
  s3Direct: { label: 's3rver GetObject direct', section: 'blob', clients: 1 },
  direct10: { label: 'direct, aggregate', section: 'blob', clients: 'many' },
  nginx10: { label: 'nginx sendfile, aggregate', section: 'blob', clients: 'many' },
  mirrorCold10: { label: 'mirror cold (one fill), aggregate', section: 'blob', clients: 'many' },
  mirrorWarm10: { label: 'mirror warm (restarted), aggregate', section: 'blob', clients: 'many' },
  teeCold10: { label: 'the least Node tee, cold (bench/floor.mjs), aggregate', section: 'blob', clients: 'many' },
  replicasCold10: { label: '2 replicas on S3, cold, 5+5, aggregate', section: 'blob', clients: 'many' },
  replicasWarm10: { label: '2 replicas on S3, warm, 5+5, aggregate', section: 'blob', clients: 'many' },
  workers1Cold10: { label: 'mirror, workers: 1, cold (one fill), aggregate', section: 'blob', clients: 'many' },
  workers2Cold10: { label: 'mirror, workers: 2, cold (one fill), aggregate', section: 'blob', clients: 'many' },
  workers1Warm10: { label: 'mirror, workers: 1, warm, aggregate', section: 'blob', clients: 'many' },
  workers2Warm10: { label: 'mirror, workers: 2, warm, aggregate', section: 'blob', clients: 'many' },
  manifestNginx: { label: 'manifest by tag: nginx, same bytes', section: 'requests', clients: 32 },
  manifestProxy: { label: 'manifest by tag: distribution proxy, warm', section: 'requests', clients: 32 },
  manifestMirror: { label: 'manifest by tag: mirror, warm, within TTL', section: 'requests', clients: 32 },
  smallNginx: { label: '4 KB blob: nginx, same bytes', section: 'requests', clients: 32 },
  smallProxy: { label: '4 KB blob: distribution proxy, warm', section: 'requests', clients: 32 },
  smallMirror: { label: '4 KB blob: mirror, warm', section: 'requests', clients: 32 },
  workers1Small: { label: '4 KB blob: mirror, workers: 1, warm', section: 'requests', clients: 32 },
  workers2Small: { label: '4 KB blob: mirror, workers: 2, warm', section: 'requests', clients: 32 },
  ...throttledCases,
  crowdCold: { label: 'mirror cold, one fill, aggregate', section: 'crowd', clients: 300 },
  stackIdle: { label: "the design card's stack alone (bench/floor.mjs), idle", section: 'floor', clients: 0 },
} satisfies Record<string, CaseInfo>;

export type CaseKey = keyof typeof CASES;
/** One run of every case that ran in a round. */
export type Round = Partial<Record<CaseKey, Run>>;

export interface Case {
  label: string;
  clients: number;
  runs: Run[];
  /** Of MB/s or requests/s, over the runs that succeeded. */
  stats?: Stats;
  /** Of the serving process's CPU seconds per GB delivered (CPU µs per request for wrk cases). */
  cpu?: Stats;
  /** Of the upstream's, likewise, where the upstream is not the server. */
  upstreamCpu?: Stats;
}
export type Cases = Partial<Record<CaseKey, Case>>;

/** CPU seconds per GB (10^9 bytes) delivered, or, for a wrk run, CPU µs per request. */
function cpuPer(r: Run, cpu: number | undefined): number | undefined {
  if (!r.ok || cpu === undefined) return undefined;
  if (r.requests !== undefined) return r.requests > 0 ? (cpu / r.requests) * 1e6 : undefined;
  return r.bytes > 0 ? cpu / (r.bytes / 1e9) : undefined;
}

const figure = (r: Run): number | undefined => r.mbps ?? r.rps;
const known = <T>(xs: (T | undefined)[]): T[] => xs.filter((x): x is T => x !== undefined);

export function buildCases(rounds: Round[], clients: number): Cases {
  const entries = (Object.keys(CASES) as CaseKey[]).flatMap((k) => {
    const runs = known(rounds.map((r) => r[k]));
    if (!runs.length) return [];
    const info: CaseInfo = CASES[k];
    // Where the upstream serves the case itself, or has no part in it, its CPU is not shown.
    const direct = k === 'direct' || k === 'direct10' || k.endsWith('Direct') || k.startsWith('nginx') || CASES[k].section === 'requests';
    const c: Case = {
      label: info.label,
      clients: info.clients === 'many' ? clients : info.clients,
      runs,
      stats: stats(known(runs.map(figure))),
      cpu: stats(known(runs.map((r) => cpuPer(r, r.serverCpu)))),
      ...(direct ? {} : { upstreamCpu: stats(known(runs.map((r) => cpuPer(r, r.upstreamCpu)))) }),
    };
    return [[k, c]];
  });
  return Object.fromEntries(entries) as Cases;
}

export interface Ratio {
  label: string;
  /** One value per round in which both sides ran. */
  values: number[];
  stats?: Stats;
  /** "≥ 0.9", say; absent for ratios kept for comparison only. */
  target?: { op: '>=' | '<'; value: number };
}

interface RatioDef {
  label: string;
  of: (r: Round) => number | undefined;
  target?: { op: '>=' | '<'; value: number };
}

const val = (r: Run | undefined): number | undefined => (r?.ok ? figure(r) : undefined);
const div = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;
const maxOf = (...values: (number | undefined)[]): number | undefined => {
  const k = known(values);
  return k.length ? Math.max(...k) : undefined;
};
const over = (label: string, a: CaseKey, b: CaseKey, target?: RatioDef['target']): RatioDef => ({
  label,
  of: (r) => div(val(r[a]), val(r[b])),
  ...(target ? { target } : {}),
});

const RATIOS: RatioDef[] = [
  over('mirror cold / direct', 'mirrorCold', 'direct', { op: '>=', value: 0.9 }),
  { label: 'mirror warm / max(nginx, direct)', of: (r) => div(val(r.mirrorWarm), maxOf(val(r.nginx), val(r.direct))), target: { op: '>=', value: 0.8 } },
  over('proxy-mode cold / direct', 'proxyCold', 'direct'),
  over('proxy-mode warm / direct', 'proxyWarm', 'direct'),
  over('mirror cold / proxy-mode cold', 'mirrorCold', 'proxyCold'),
  over('mirror warm / proxy-mode warm', 'mirrorWarm', 'proxyWarm'),
  over('mirror cold x10 / direct x10', 'mirrorCold10', 'direct10'),
  { label: 'mirror warm x10 / max(nginx x10, direct x10)', of: (r) => div(val(r.mirrorWarm10), maxOf(val(r.nginx10), val(r.direct10))) },
  over('mirror on S3 cold / mirror on fs cold', 's3Cold', 'mirrorCold'),
  over('mirror on S3 warm / mirror on fs warm', 's3Warm', 'mirrorWarm'),
  over('mirror on S3 warm / s3rver GetObject direct', 's3Warm', 's3Direct'),
  over('2 replicas cold x10 / mirror on S3 cold', 'replicasCold10', 's3Cold'),
  over('2 replicas warm x10 / mirror on S3 warm', 'replicasWarm10', 's3Warm'),
  over('workers: 2 / workers: 1, cold x10', 'workers2Cold10', 'workers1Cold10'),
  over('workers: 2 / workers: 1, warm x10', 'workers2Warm10', 'workers1Warm10'),
  over('workers: 2 / workers: 1, 4 KB blob req/s', 'workers2Small', 'workers1Small'),
  over('manifest by tag, req/s: mirror / nginx', 'manifestMirror', 'manifestNginx'),
  over('manifest by tag, req/s: mirror / proxy-mode', 'manifestMirror', 'manifestProxy'),
  over('4 KB blob, req/s: mirror / nginx', 'smallMirror', 'smallNginx'),
  over('4 KB blob, req/s: mirror / proxy-mode', 'smallMirror', 'smallProxy'),
  ...RATES.flatMap((rate) =>
    (['Small', 'Big'] as const).map((size) =>
      over(`${rate.label}, ${size === 'Small' ? 'small layers' : 'big layer'}: mirror cold / direct`, `${rate.key}${size}Mirror`, `${rate.key}${size}Direct`),
    ),
  ),
];

/** Every ratio computed within each round (so that a machine's drift between rounds cancels), then summarized. */
export function ratios(rounds: Round[]): Ratio[] {
  return RATIOS.flatMap((d) => {
    const values = known(rounds.map(d.of));
    return values.length ? [{ label: d.label, values, stats: stats(values), ...(d.target ? { target: d.target } : {}) }] : [];
  });
}

/** The mirror's memory, MB (10^6 bytes), one value per round. */
export interface MemoryFigure {
  label: string;
  values: number[];
  stats?: Stats;
  target?: { op: '<'; value: number };
}

const mbOf = (kib: number): number => (kib * 1024) / 1e6;

export function memory(rounds: Round[]): MemoryFigure[] {
  const hwm = (r: Run | undefined): number | undefined => (r?.memory ? mbOf(r.memory.hwmKiB) : undefined);
  const defs: Array<Omit<MemoryFigure, 'values' | 'stats'> & { of: (r: Round) => number | undefined }> = [
    {
      label: 'idle, a second after start (VmRSS)',
      of: (r) => (r.crowdCold?.idleKiB === undefined ? undefined : mbOf(r.crowdCold.idleKiB)),
      target: { op: '<', value: 60 },
    },
    {
      label: "floor: node, koa, @koa/router, undici and keyv serving HTTP, nothing of the mirror's, idle as above",
      of: (r) => (r.stackIdle?.idleKiB === undefined ? undefined : mbOf(r.stackIdle.idleKiB)),
    },
    { label: 'peak with 10 clients, cold or warm (VmHWM)', of: (r) => maxOf(hwm(r.mirrorCold10), hwm(r.mirrorWarm10)), target: { op: '<', value: 100 } },
    { label: 'floor: the least Node tee (one undici GET, no digest, no spool), 10 clients cold (VmHWM)', of: (r) => hwm(r.teeCold10) },
    { label: 'peak with 300 clients on one cold blob (VmHWM)', of: (r) => hwm(r.crowdCold) },
  ];
  return defs.flatMap(({ of, ...d }) => {
    const values = known(rounds.map(of));
    return values.length ? [{ ...d, values, stats: stats(values) }] : [];
  });
}

// --- Markdown ---------------------------------------------------------------------------

const fmt = (v: number | undefined, digits = 0): string => (v === undefined ? '-' : v.toFixed(digits));
const med = (s: Stats | undefined, digits = 0): string => fmt(s?.median, digits);
const range = (s: Stats | undefined, digits = 0): string => (s && s.n > 1 ? `${fmt(s.min, digits)}–${fmt(s.max, digits)}` : '-');
/** The median, and the range in parentheses when there is one. */
const medRange = (s: Stats | undefined, digits = 0): string => (s && s.n > 1 ? `${med(s, digits)} (${range(s, digits)})` : med(s, digits));

function mdTable(head: string[], rows: string[][]): string[] {
  const align = head.map((_, i) => (i === 0 ? '---' : '---:'));
  return [head, align, ...rows].map((cols) => `| ${cols.join(' | ')} |`);
}

const met = (target: { op: '>=' | '<'; value: number } | undefined, v: number | undefined): string => {
  if (!target) return '';
  const ok = v === undefined ? undefined : target.op === '>=' ? v >= target.value : v < target.value;
  return `${target.op === '>=' ? '≥' : '<'} ${target.value}${ok === undefined ? '' : ok ? ' met' : ' **missed**'}`;
};

export interface Context {
  /** The big layer's size in bytes, the small throttled ones' (and how many a round pulls), the crowd's blob's. */
  sizes: { big: number; small: number; smallLayers: number; crowd: number };
  wrk: { available: boolean; seconds: number; connections: number; threads: number };
  clients: number;
}

const sizeName = (bytes: number): string => (bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : `${(bytes / 1e6).toFixed(0)} MB`);

/** What a results file says of the run that wrote it. */
export interface RunMeta {
  date: string;
  commit: string;
  machine: { cpus: number; cpu: string; node: string };
  load: { before: number[]; after: number[] };
  flags: Record<string, string | boolean | undefined>;
  runs: number;
  seconds: number;
}

/** The results file's first lines: which run, where, on how busy a machine. */
export function resultsHeader({ date, commit, machine, load, flags, runs, seconds }: RunMeta): string {
  const loads = (l: number[]): string => l.map((v) => v.toFixed(1)).join(' ');
  const flagList = Object.entries(flags).flatMap(([k, v]) => (v === true ? [`--${k}`] : typeof v === 'string' ? [`--${k} ${v}`] : []));
  return [
    '# Benchmark results',
    '',
    `Written by \`npm run bench${flagList.length ? ` -- ${flagList.join(' ')}` : ''}\` on ${date.slice(0, 16).replace('T', ' ')} UTC ` +
      `at commit ${commit}, Node.js ${machine.node}, ${machine.cpus} cores (${machine.cpu}); ${runs} round${runs === 1 ? '' : 's'} in ${seconds.toFixed(0)} s.`,
    `The mirror runs as \`npm start\` runs it, with node's ${SERVER_NODE_FLAGS.map((f) => `\`${f}\``).join(' ')} (src/node-flags.ts).`,
    `Load average (1, 5, 15 min) before: ${loads(load.before)}, after: ${loads(load.after)}. On ${machine.cpus} cores, a load above ${machine.cpus} ` +
      'means other work shared the machine: MB/s and requests/s then say less than the ratios and the CPU seconds per GB.',
    'How to run the bench and read these figures: [README, Benchmarks](../README.md#benchmarks).',
    '',
  ].join('\n');
}

/** The results as Markdown: the tables, then the notes. */
export function report(c: Cases, rounds: Round[], ctx: Context): string {
  const lines: string[] = [];
  const section = (s: Section) => (Object.keys(c) as CaseKey[]).filter((k) => CASES[k].section === s).map((k) => c[k]!);
  const cpuCols = (k: Case, digits = 2): string[] => [medRange(k.cpu, digits), k.upstreamCpu ? medRange(k.upstreamCpu, digits) : '-'];
  const okRuns = (k: Case): string => `${k.stats?.n ?? 0}/${k.runs.length}`;

  lines.push(`### One ${sizeName(ctx.sizes.big)} layer, MB/s (MB = 10^6 bytes)`, '');
  lines.push(
    ...mdTable(
      ['case', 'clients', 'MB/s median', 'range', 'server CPU s/GB (range)', 'upstream CPU s/GB (range)', 'ok runs'],
      section('blob').map((k) => [k.label, String(k.clients), med(k.stats), range(k.stats), ...cpuCols(k), okRuns(k)]),
    ),
  );

  lines.push('', '### Ratios, each computed within one round, then median and range over the rounds', '');
  lines.push(
    ...mdTable(
      ['ratio', 'median', 'range', 'rounds', 'target'],
      ratios(rounds).map((r) => [r.label, med(r.stats, 2), range(r.stats, 2), String(r.values.length), met(r.target, r.stats?.median)]),
    ),
  );

  const requests = section('requests');
  lines.push('', `### Small requests, requests/s (wrk -t${ctx.wrk.threads} -c${ctx.wrk.connections} -d${ctx.wrk.seconds}s)`, '');
  if (!ctx.wrk.available) lines.push('Not run: wrk is not installed (`apt-get install wrk`).');
  else {
    lines.push(
      ...mdTable(
        ['case', 'req/s median', 'range', 'server CPU µs/request (range)', 'upstream requests per run', 'ok runs'],
        requests.map((k) => [
          k.label,
          med(k.stats),
          range(k.stats),
          cpuCols(k, 0)[0]!,
          k.runs.map((r) => fmt(r.upstreamRequests)).join(' / '),
          okRuns(k),
        ]),
      ),
    );
  }

  const throttled = section('throttled');
  lines.push('', `### Upstream behind a throttled link (small: ${ctx.sizes.smallLayers > 1 ? `${ctx.sizes.smallLayers} layers of ${sizeName(ctx.sizes.small)}, each pulled once a round, summed` : `one ${sizeName(ctx.sizes.small)} layer`}; big ${sizeName(ctx.sizes.big)}), MB/s`, '');
  lines.push(
    ...mdTable(
      ['case', 'MB/s median', 'range', 'server CPU s/GB (range)', 'ok runs'],
      throttled.map((k) => [k.label, med(k.stats), range(k.stats), cpuCols(k)[0]!, okRuns(k)]),
    ),
  );

  lines.push('', `### The mirror's memory, MB (10^6 bytes)`, '');
  const crowd = c.crowdCold;
  lines.push(
    ...mdTable(
      ['figure', 'median', 'range', 'rounds', 'target'],
      memory(rounds).map((m) => [m.label, med(m.stats), range(m.stats), String(m.values.length), met(m.target, m.stats?.max)]),
    ),
  );
  if (crowd) {
    lines.push(
      '',
      `300 clients on one cold ${sizeName(ctx.sizes.crowd)} blob (one curl process, every connection opened at once): ` +
        `${medRange(crowd.stats)} MB/s aggregate, mirror CPU ${medRange(crowd.cpu, 2)} s/GB, ` +
        `upstream blob GETs ${crowd.runs.map((r) => fmt(r.upstreamGets)).join(' / ')}.`,
    );
  }

  lines.push('', '### Notes', '', ...notes(c).map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

const per = (k: Case | undefined, f: (r: Run) => number | undefined, to: (v: number | undefined) => string = (v) => fmt(v)): string =>
  k ? k.runs.map((r) => to(f(r))).join(' / ') : '-';

const caches = (k: Case | undefined): string =>
  k
    ? k.runs
        .map((r) => {
          const counts = new Map<string, number>();
          for (const v of r.cache ?? []) counts.set(v, (counts.get(v) ?? 0) + 1);
          return [...counts].map(([v, n]) => (n > 1 ? `${n} ${v}` : v)).join('+') || '-';
        })
        .join(' / ')
    : '-';

const mb = (kib: number | undefined): string => fmt(kib === undefined ? undefined : mbOf(kib));

function notes(c: Cases): string[] {
  const out: string[] = [];
  const gets = (k: Case | undefined): string => per(k, (r) => r.upstreamGets);
  out.push(
    `Upstream blob GETs per run (claim: exactly 1 per cold mirror run, whatever the clients): mirror cold x10 ${gets(c.mirrorCold10)}, ` +
      `mirror cold ${gets(c.mirrorCold)}, mirror warm ${gets(c.mirrorWarm)}, proxy-mode cold ${gets(c.proxyCold)}, proxy-mode warm ${gets(c.proxyWarm)}.`,
  );
  out.push(
    `X-Mirror-Cache per run: cold ${caches(c.mirrorCold)}, warm ${caches(c.mirrorWarm)}, cold x10 ${caches(c.mirrorCold10)}, ` +
      `warm x10 ${caches(c.mirrorWarm10)}${c.crowdCold ? `, 300 clients ${caches(c.crowdCold)}` : ''}.`,
  );
  const stored = (k: Case | undefined): string => per(k, (r) => r.storedAfterMs);
  out.push(
    `Cold runs, ms from the last byte to the blob stored: mirror ${stored(c.mirrorCold)}, mirror x10 ${stored(c.mirrorCold10)}, ` +
      `proxy-mode ${stored(c.proxyCold)}.`,
  );
  const x10 = (label: string, k: Case | undefined): string =>
    `${label} VmHWM ${per(k, (r) => r.memory?.hwmKiB, mb)} MB, sampled VmRSS peak ${per(k, (r) => r.memory?.sampledPeakKiB, mb)} MB, ` +
    `idle before ${per(k, (r) => r.memory?.startKiB, mb)} MB`;
  out.push(`Mirror memory per run: ${x10('x10 cold', c.mirrorCold10)}; ${x10('x10 warm', c.mirrorWarm10)}.`);
  if (c.s3Cold && c.s3Warm) out.push(...s3Notes(c.s3Cold, c.s3Warm));
  else out.push('Mirror on S3: not run (--no-s3 or --quick).');
  if (c.replicasCold10 && c.replicasWarm10) out.push(...replicaNotes(c.replicasCold10, c.replicasWarm10));
  else out.push('Two replicas on S3 + Redis: not run (--no-replicas, --quick, or no redis-server).');
  if (c.workers1Cold10 && c.workers2Cold10) {
    out.push(
      `workers: 1 and workers: 2 (fs storage, 10 clients): upstream blob GETs cold ${gets(c.workers1Cold10)} and ${gets(c.workers2Cold10)} ` +
        `(claim: exactly 1, across both workers too); X-Mirror-Cache cold ${caches(c.workers1Cold10)} and ${caches(c.workers2Cold10)}; ` +
        'server CPU is the whole process tree (primary and workers). On 2 cores shared with the clients and the upstream, a second worker has little room to gain.',
    );
  } else out.push('workers: 1 against workers: 2: not run (--no-workers).');
  const failures = Object.values(c).flatMap((k) => k.runs.filter((r) => !r.ok).map((r) => `${k.label}: ${r.error ?? 'failed'}`));
  if (failures.length) out.push(`Failed runs: ${failures.join('; ')}.`);
  return out;
}

function s3Notes(cold: Case, warm: Case): string[] {
  const cores = (k: Case, who: 'mirror' | 's3rver'): string =>
    per(k, (r) => (r.cpu && r.seconds > 0 ? r.cpu[who] / r.seconds : undefined), (v) => fmt(v, 2));
  return [
    `Mirror on S3, ms from the last byte to the blob committed in S3 (HeadObject of its key, polled every 50 ms): ${per(cold, (r) => r.storedAfterMs)}; ` +
      `of which until CompleteMultipartUpload reached s3rver: ${per(cold, (r) => r.completeSentAfterMs)}; multipart uploads left on disk after the commit ` +
      `${per(cold, (r) => r.uploadsLeft)}; upstream blob GETs cold ${per(cold, (r) => r.upstreamGets)}, warm ${per(warm, (r) => r.upstreamGets)}.`,
    `Mirror on S3, cores busy while the client pulled (CPU s / wall s): cold mirror ${cores(cold, 'mirror')}, s3rver ${cores(cold, 's3rver')}; ` +
      `warm mirror ${cores(warm, 'mirror')}, s3rver ${cores(warm, 's3rver')}; sampled VmRSS peak cold ${per(cold, (r) => r.memory?.sampledPeakKiB, mb)} MB, ` +
      `warm ${per(warm, (r) => r.memory?.sampledPeakKiB, mb)} MB.`,
    "s3rver is a Node process (the bench's own) on the same cores as the mirror, the upstream and curl; it writes each part to a file and on " +
      'Complete copies the parts into the object, and serves GETs from a Node stream. These numbers bound what the S3 adapter can show on this ' +
      'machine; against a real S3 or MinIO they would differ.',
  ];
}

function replicaNotes(cold: Case, warm: Case): string[] {
  const rss = (k: Case): string =>
    k.runs
      .map((r) => (r.replicas ?? []).map((x, i) => `${'ab'[i] ?? i} ${mb(x.memory.hwmKiB)} (sampled ${mb(x.memory.sampledPeakKiB)}, idle ${mb(x.memory.startKiB)})`).join(', '))
      .join(' / ');
  return [
    `2 replicas (blobs on one s3rver bucket, metadata on Keyv/Redis, replication on), 10 clients split 5/5: upstream blob GETs cold ` +
      `${per(cold, (r) => r.upstreamGets)} (claim: exactly 1 across both), warm ${per(warm, (r) => r.upstreamGets)}; uploads of the blob to S3 ` +
      `cold ${per(cold, (r) => r.uploads)} (claim: 1), warm ${per(warm, (r) => r.uploads)}; ms from the last byte to the blob committed in S3: ` +
      `${per(cold, (r) => r.storedAfterMs)}; X-Mirror-Cache cold ${caches(cold)}, warm ${caches(warm)}; peak RSS per replica, VmHWM MB: ` +
      `cold ${rss(cold)}; warm (restarted) ${rss(warm)}.`,
  ];
}

export async function writeText(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

export const writeJson = (path: string, data: unknown): Promise<void> => writeText(path, `${JSON.stringify(data, null, 2)}\n`);
