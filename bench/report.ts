/**
 * The results: each case's runs summarized (median, min, max of MB/s), the ratios the project
 * tracks against their targets, the mirror's memory with 10 clients and the upstream GETs
 * behind each cold pull, and for the mirror on S3 its ratios to the mirror on fs, the wait
 * until the blob is committed in S3 and where the CPU went; printed as a table and written as JSON.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { mbps, stats, type MemoryPeak, type ParallelPull, type Pull, type Stats } from './measure.js';

export interface Run {
  ok: boolean;
  mbps?: number;
  seconds: number;
  bytes: number;
  /** With many clients: each one's own time. */
  clientSeconds?: number[];
  /** X-Mirror-Cache of each client, for mirror runs. */
  cache?: string[];
  /** Upstream blob GETs while this run lasted. */
  upstreamGets?: number;
  memory?: MemoryPeak;
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

export interface Case {
  label: string;
  clients: number;
  runs: Run[];
  stats?: Stats;
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

function makeCase(label: string, clients: number, runs: Run[]): Case {
  return { label, clients, runs, stats: stats(runs.flatMap((r) => (r.mbps === undefined ? [] : [r.mbps]))) };
}

export interface Ratio {
  label: string;
  value?: number;
  /** "≥ 0.9", say; absent for ratios kept for comparison only. */
  target?: { op: '>=' | '<'; value: number };
  /** Decimals to print; 2 unless said. */
  digits?: number;
}

const median = (c: Case | undefined): number | undefined => c?.stats?.median;

function div(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

function maxOf(...values: (number | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length ? Math.max(...known) : undefined;
}

/** The cases, in table order, with their labels; the `x10` ones are the many-client runs. */
const CASES = {
  direct: 'direct (upstream docker-registry)',
  nginx: 'nginx sendfile',
  proxyCold: 'distribution proxy-mode cold',
  proxyWarm: 'distribution proxy-mode warm',
  mirrorCold: 'mirror cold',
  mirrorWarm: 'mirror warm',
  s3Cold: 'mirror, blobs on S3, cold',
  s3Warm: 'mirror, blobs on S3, warm',
  s3Direct: 's3rver GetObject direct (curl)',
  direct10: 'direct, aggregate',
  nginx10: 'nginx sendfile, aggregate',
  mirrorCold10: 'mirror cold (one fill), aggregate',
  mirrorWarm10: 'mirror warm (restarted), aggregate',
  replicasCold10: '2 replicas on S3, cold, 5+5, aggr.',
  replicasWarm10: '2 replicas on S3, warm, 5+5, aggr.',
} as const;

export type CaseKey = keyof typeof CASES;
/** The cases that can be left out (--no-s3, --no-replicas), or that run in one round only (the replicas). */
type OptionalKey = 's3Cold' | 's3Warm' | 's3Direct' | 'replicasCold10' | 'replicasWarm10';
export type Cases = Record<Exclude<CaseKey, OptionalKey>, Case> & Partial<Record<OptionalKey, Case>>;
/** One run of every case (of the optional ones, those that ran). */
export type Round = Record<Exclude<CaseKey, OptionalKey>, Run> & Partial<Record<OptionalKey, Run>>;

export function buildCases(rounds: Round[], clients: number): Cases {
  const entries = (Object.keys(CASES) as CaseKey[]).flatMap((k) => {
    const runs = rounds.flatMap((r) => r[k] ?? []);
    return runs.length ? [[k, makeCase(CASES[k], k.endsWith('10') ? clients : 1, runs)]] : [];
  });
  return Object.fromEntries(entries) as Cases;
}

/** The ratios of medians, and the peak RSS with 10 clients (in MB) against its target. */
export function ratios(c: Cases): Ratio[] {
  const rssMB = peakRssMB(c);
  return [
    { label: 'mirror cold / direct', value: div(median(c.mirrorCold), median(c.direct)), target: { op: '>=', value: 0.9 } },
    {
      label: 'mirror warm / max(nginx, direct)',
      value: div(median(c.mirrorWarm), maxOf(median(c.nginx), median(c.direct))),
      target: { op: '>=', value: 0.8 },
    },
    { label: 'proxy-mode cold / direct', value: div(median(c.proxyCold), median(c.direct)) },
    { label: 'proxy-mode warm / direct', value: div(median(c.proxyWarm), median(c.direct)) },
    { label: 'mirror cold / proxy-mode cold', value: div(median(c.mirrorCold), median(c.proxyCold)) },
    { label: 'mirror warm / proxy-mode warm', value: div(median(c.mirrorWarm), median(c.proxyWarm)) },
    { label: 'mirror cold x10 / direct x10', value: div(median(c.mirrorCold10), median(c.direct10)) },
    {
      label: 'mirror warm x10 / max(nginx x10, direct x10)',
      value: div(median(c.mirrorWarm10), maxOf(median(c.nginx10), median(c.direct10))),
    },
    { label: 'mirror peak RSS, 10 clients (MB)', value: rssMB, target: { op: '<', value: 150 }, digits: 0 },
    ...(c.s3Cold || c.s3Warm
      ? [
          { label: 'mirror on S3 cold / mirror on fs cold', value: div(median(c.s3Cold), median(c.mirrorCold)) },
          { label: 'mirror on S3 warm / mirror on fs warm', value: div(median(c.s3Warm), median(c.mirrorWarm)) },
          { label: 'mirror on S3 warm / s3rver GetObject direct', value: div(median(c.s3Warm), median(c.s3Direct)) },
        ]
      : []),
    ...(c.replicasCold10 || c.replicasWarm10
      ? [
          { label: '2 replicas cold x10 / mirror on S3 cold', value: div(median(c.replicasCold10), median(c.s3Cold)) },
          { label: '2 replicas warm x10 / mirror on S3 warm', value: div(median(c.replicasWarm10), median(c.s3Warm)) },
        ]
      : []),
  ];
}

/** The highest VmHWM of any 10-client mirror run, in MB (10^6 bytes). */
function peakRssMB(c: Cases): number | undefined {
  const hwm = [...c.mirrorCold10.runs, ...c.mirrorWarm10.runs].flatMap((r) => (r.memory ? [r.memory.hwmKiB] : []));
  return hwm.length ? (Math.max(...hwm) * 1024) / 1e6 : undefined;
}

const fmt = (v: number | undefined, digits = 0): string => (v === undefined ? '-' : v.toFixed(digits));

export function table(c: Cases): string {
  const lines: string[] = [];
  const row = (cols: string[], widths: number[]): string =>
    cols.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join('  ');
  const w = [34, 7, 7, 7, 7, 9];
  lines.push(row(['case (MB/s, MB = 10^6 B)', 'clients', 'median', 'min', 'max', 'ok runs'], w));
  for (const k of Object.values(c)) {
    const s = k.stats;
    lines.push(row([k.label, String(k.clients), fmt(s?.median), fmt(s?.min), fmt(s?.max), `${s?.n ?? 0}/${k.runs.length}`], w));
  }
  lines.push('');
  const rw = [44, 8, 8, 6];
  lines.push(row(['ratio (of medians)', 'value', 'target', ''], rw));
  for (const r of ratios(c)) {
    const target = r.target ? `${r.target.op} ${r.target.value}` : '';
    const met = r.target && r.value !== undefined ? (r.target.op === '>=' ? r.value >= r.target.value : r.value < r.target.value) : undefined;
    lines.push(row([r.label, fmt(r.value, r.digits ?? 2), target, met === undefined ? '' : met ? 'met' : 'MISSED'], rw));
  }
  lines.push('');
  const mb = (kib: number | undefined): string => fmt(kib === undefined ? undefined : (kib * 1024) / 1e6);
  const per = (k: Case, f: (r: Run) => number | undefined, to = fmt): string => k.runs.map((r) => to(f(r))).join(' / ');
  const mem = (label: string, k: Case): string =>
    `${label}: VmHWM ${per(k, (r) => r.memory?.hwmKiB, mb)} MB, sampled VmRSS peak ${per(k, (r) => r.memory?.sampledPeakKiB, mb)} MB, ` +
    `idle before ${per(k, (r) => r.memory?.startKiB, mb)} MB`;
  lines.push(mem('mirror x10 cold', c.mirrorCold10));
  lines.push(mem('mirror x10 warm', c.mirrorWarm10));
  const gets = (k: Case): string => per(k, (r) => r.upstreamGets);
  lines.push(`upstream blob GETs per run: mirror cold x10 ${gets(c.mirrorCold10)} (claim: exactly 1), mirror cold ${gets(c.mirrorCold)},`);
  lines.push(`  mirror warm ${gets(c.mirrorWarm)}, proxy-mode cold ${gets(c.proxyCold)}, proxy-mode warm ${gets(c.proxyWarm)}`);
  const caches = (k: Case): string =>
    k.runs
      .map((r) => {
        const counts = new Map<string, number>();
        for (const v of r.cache ?? []) counts.set(v, (counts.get(v) ?? 0) + 1);
        return [...counts].map(([v, n]) => (n > 1 ? `${n} ${v}` : v)).join('+') || '-';
      })
      .join(' / ');
  lines.push(
    `X-Mirror-Cache per run: cold ${caches(c.mirrorCold)}, warm ${caches(c.mirrorWarm)}, ` +
      `cold x10 ${caches(c.mirrorCold10)}, warm x10 ${caches(c.mirrorWarm10)}` +
      (c.s3Cold && c.s3Warm ? `, on S3 cold ${caches(c.s3Cold)}, on S3 warm ${caches(c.s3Warm)}` : ''),
  );
  const stored = (k: Case): string => per(k, (r) => r.storedAfterMs);
  lines.push(
    `cold runs, ms from the last byte to the blob stored: mirror ${stored(c.mirrorCold)}, mirror x10 ${stored(c.mirrorCold10)}, ` +
      `proxy-mode ${stored(c.proxyCold)}`,
  );
  if (c.s3Cold && c.s3Warm) lines.push(...s3Notes(c.s3Cold, c.s3Warm, per, mb));
  else lines.push('mirror on S3: not run (--no-s3)');
  if (c.replicasCold10 && c.replicasWarm10) lines.push(...replicaNotes(c.replicasCold10, c.replicasWarm10, per, mb, caches));
  else lines.push('two replicas on S3 + Redis: not run (--no-replicas, or no redis-server)');
  const failures = Object.values(c).flatMap((k) => k.runs.filter((r) => !r.ok).map((r) => `${k.label}: ${r.error ?? 'failed'}`));
  if (failures.length) lines.push('', 'failed runs:', ...failures.map((f) => `  ${f}`));
  return lines.join('\n');
}

type Per = (k: Case, f: (r: Run) => number | undefined, to?: (v: number | undefined) => string) => string;

function s3Notes(cold: Case, warm: Case, per: Per, mb: (kib: number | undefined) => string): string[] {
  const cores = (k: Case, who: 'mirror' | 's3rver'): string =>
    per(k, (r) => (r.cpu && r.seconds > 0 ? r.cpu[who] / r.seconds : undefined), (v) => fmt(v, 2));
  return [
    `mirror on S3, ms from the last byte to the blob committed in S3 (HeadObject of its key, polled every 50 ms): ${per(cold, (r) => r.storedAfterMs)};`,
    `  of which until CompleteMultipartUpload reached s3rver: ${per(cold, (r) => r.completeSentAfterMs)}`,
    `  multipart uploads left on disk after the commit ${per(cold, (r) => r.uploadsLeft)}; upstream blob GETs cold ${per(cold, (r) => r.upstreamGets)}, ` +
      `warm ${per(warm, (r) => r.upstreamGets)}`,
    `mirror on S3, cores busy while the client pulled (CPU s / wall s): cold mirror ${cores(cold, 'mirror')}, s3rver ${cores(cold, 's3rver')};`,
    `  warm mirror ${cores(warm, 'mirror')}, s3rver ${cores(warm, 's3rver')}; sampled VmRSS peak cold ${per(cold, (r) => r.memory?.sampledPeakKiB, mb)} MB, ` +
      `warm ${per(warm, (r) => r.memory?.sampledPeakKiB, mb)} MB, idle before cold ${per(cold, (r) => r.memory?.startKiB, mb)} MB`,
    'note: s3rver is a Node process (the bench\'s own) on the same cores as the mirror, the upstream and curl; it writes',
    '  each part to a file and on Complete copies the parts into the object, and serves GETs from a Node stream. These',
    '  numbers bound what the S3 adapter can show on this machine; against a real S3 or MinIO they would differ.',
  ];
}

function replicaNotes(cold: Case, warm: Case, per: Per, mb: (kib: number | undefined) => string, caches: (k: Case) => string): string[] {
  const rss = (k: Case): string =>
    k.runs
      .map((r) => (r.replicas ?? []).map((x, i) => `${'ab'[i] ?? i} ${mb(x.memory.hwmKiB)} (sampled ${mb(x.memory.sampledPeakKiB)}, idle ${mb(x.memory.startKiB)})`).join(', '))
      .join(' / ');
  return [
    `2 replicas (blobs on one s3rver bucket, metadata on Keyv/Redis, replication on), 10 clients split 5/5:`,
    `  upstream blob GETs cold ${per(cold, (r) => r.upstreamGets)} (claim: exactly 1 across both), warm ${per(warm, (r) => r.upstreamGets)}; ` +
      `uploads of the blob to S3 cold ${per(cold, (r) => r.uploads)} (claim: 1), warm ${per(warm, (r) => r.uploads)}`,
    `  ms from the last byte to the blob committed in S3: ${per(cold, (r) => r.storedAfterMs)}; ` +
      `X-Mirror-Cache cold ${caches(cold)}, warm ${caches(warm)}`,
    `  peak RSS per replica, VmHWM MB: cold ${rss(cold)}; warm (restarted) ${rss(warm)}`,
  ];
}

export async function writeJson(path: string, data: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(data, null, 2)}\n`);
}
