/**
 * `npm run bench:ab -- --a <dir> --b <dir> [--case cold|warm|cold10] [--pairs N] [--mib M]`: two builds
 * of the mirror (each a copy of dist/, e.g. `cp -r dist /tmp/dist-before` before a change), pulled
 * in turn, A B A B, over one upstream docker-registry: each pair gives the ratio of A to B for
 * throughput and for the mirror's CPU seconds per GB, and each run the mirror's peak RSS. Pairing keeps a ratio meaningful on a
 * machine whose speed drifts; the CPU figure hardly depends on how busy the machine is. The tool
 * for judging one data-path change; `npm run bench` is the one for quoting.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { defer, log, pushLayerImage, runMain, upstreamIn } from './harness.js';
import { cpuSeconds, mbps, pull, pullMany, stats } from './measure.js';
import { startMirror, waitStored } from './servers.js';

interface Run {
  mbps: number;
  cpuPerGb: number;
  /** The mirror's peak resident memory over its life (VmHWM), MB. */
  peakMb: number;
}

async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmHWM for ${pid}`);
  return (Number(kb) * 1024) / 1e6;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { a: { type: 'string' }, b: { type: 'string' }, case: { type: 'string' }, pairs: { type: 'string' }, mib: { type: 'string' } },
  });
  if (!values.a || !values.b) throw new Error('give --a and --b, each a built dist/ directory');
  const which = values.case ?? 'cold';
  if (!['cold', 'warm', 'cold10'].includes(which)) throw new Error(`--case is cold, warm or cold10, not ${which}`);
  const pairs = Number(values.pairs ?? 5);
  const size = Number(values.mib ?? 512) * 1024 * 1024;
  const clis = { A: join(resolve(values.a), 'src', 'cli.js'), B: join(resolve(values.b), 'src', 'cli.js') };
  const work = await mkdtemp(join(tmpdir(), 'oci-mirror-ab-'));
  defer(() => rm(work, { recursive: true, force: true }));
  const upstream = await upstreamIn(work);
  const layer = await pushLayerImage(upstream, 'bench/big', size, 'bench');
  const path = `/v2/bench/big/blobs/${layer.digest}`;
  const clients = which === 'cold10' ? 10 : 1;

  const once = async (label: 'A' | 'B', i: number): Promise<Run> => {
    const dataDir = join(work, `${label}-${i}`);
    let mirror = await startMirror({ upstreamUrl: upstream.url, dataDir, work, cli: clis[label] });
    try {
      if (which === 'warm') {
        const first = await pull(`${mirror.url}${path}`, layer.size, 300);
        if (!first.ok) throw new Error(`${label}: the warming pull failed: ${first.error}`);
        await waitStored(`${mirror.url}${path}`);
        await mirror.stop();
        mirror = await startMirror({ upstreamUrl: upstream.url, dataDir, work, cli: clis[label] });
      }
      const cpu0 = await cpuSeconds(mirror.pid);
      const result = clients === 1 ? await pull(`${mirror.url}${path}`, layer.size, 300) : await pullMany(`${mirror.url}${path}`, clients, layer.size, 600);
      if (!result.ok) throw new Error(`${label}: the pull failed`);
      if (which !== 'warm') await waitStored(`${mirror.url}${path}`);
      const cpu = (await cpuSeconds(mirror.pid)) - cpu0;
      return { mbps: mbps(result.bytes, result.seconds), cpuPerGb: cpu / (result.bytes / 1e9), peakMb: await peakRss(mirror.pid) };
    } finally {
      await mirror.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  };

  const rows: Array<{ a: Run; b: Run }> = [];
  for (let i = 0; i < pairs; i++) {
    const a = await once('A', i);
    const b = await once('B', i);
    rows.push({ a, b });
    const show = (r: Run) => `${r.mbps.toFixed(0)} MB/s ${r.cpuPerGb.toFixed(2)} s/GB peak ${r.peakMb.toFixed(0)} MB`;
    log(`pair ${i + 1}: A ${show(a)}, B ${show(b)}`);
  }
  const line = (name: string, xs: number[]): string => {
    const s = stats(xs)!;
    return `${name.padEnd(26)} ${s.median.toFixed(2).padStart(8)} ${s.min.toFixed(2).padStart(8)} ${s.max.toFixed(2).padStart(8)}`;
  };
  const out = [
    `${which}, ${clients} client(s), ${layer.size} bytes, ${pairs} pairs (A ${values.a}, B ${values.b})`,
    `${'figure'.padEnd(26)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)}`,
    line('A MB/s', rows.map((r) => r.a.mbps)),
    line('B MB/s', rows.map((r) => r.b.mbps)),
    line('A / B, MB/s', rows.map((r) => r.a.mbps / r.b.mbps)),
    line('A CPU s/GB', rows.map((r) => r.a.cpuPerGb)),
    line('B CPU s/GB', rows.map((r) => r.b.cpuPerGb)),
    line('A / B, CPU s/GB', rows.map((r) => r.a.cpuPerGb / r.b.cpuPerGb)),
    line('A peak RSS, MB', rows.map((r) => r.a.peakMb)),
    line('B peak RSS, MB', rows.map((r) => r.b.peakMb)),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

await runMain(main);
