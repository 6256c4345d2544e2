/**
 * Node flags against throughput: a mirror started with each set of flags (interleaved, fresh
 * mirror per run) answers wrk on a warm 4 KB blob and a warm manifest; prints requests per
 * second and CPU µs per request per run, the idle VmRSS of each mirror before its run and its peak. For choosing V8 heap flags.
 *
 *   npx tsx bench/flags-ab.ts --rounds 3 --flags="" --flags="--max-semi-space-size=1"
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, wrk } from './measure.js';
import { pushSmallImage } from './requests.js';
import { startMirror, startUpstream, waitStored } from './servers.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, flags: { type: 'string', multiple: true, default: [''] }, seconds: { type: 'string', default: '8' } } });
const work = await mkdtemp(join(tmpdir(), 'flags-ab-'));
const upstream = await startUpstream(work);
try {
  const r = await pushSmallImage(upstream, 'bench/small', { threads: 2, connections: 32, seconds: Number(values.seconds) });
  const results = new Map<string, number[][]>();
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const flags of values.flags) {
      const dataDir = await mkdtemp(join(work, 'data-'));
      const mirror = await startMirror({ upstreamUrl: upstream.url, dataDir, work, nodeFlags: flags.split(' ').filter(Boolean) });
      try {
        const blob = `${mirror.url}/v2/${r.repository}/blobs/${r.blob.digest}`;
        const manifest = `${mirror.url}/v2/${r.repository}/manifests/${r.tag}`;
        await new Promise((res) => setTimeout(res, 2_000));
        const idle = /VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${mirror.pid}/status`, 'utf8'))![1];
        await fetch(blob).then((res) => res.arrayBuffer());
        await waitStored(blob);
        await fetch(manifest, { headers: { accept: r.manifest.mediaType } }).then((res) => res.arrayBuffer());
        // CPU per request, like the bench's wrk figures: it follows the load of the machine much less than req/s.
        const measured = async (url: string, headers: Record<string, string>) => {
          const cpu = await cpuSeconds(mirror.pid);
          const result = await wrk(url, { ...r.wrk, headers });
          return { ...result, us: ((await cpuSeconds(mirror.pid)) - cpu) * 1e6 / Math.max(1, result.requests) };
        };
        const b = await measured(blob, {});
        const m = await measured(manifest, { accept: r.manifest.mediaType });
        const hwm = /VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${mirror.pid}/status`, 'utf8'))![1];
        const line = `idle ${(Number(idle) / 1024).toFixed(1)} MB, blob ${b.requestsPerSecond.toFixed(0)} req/s ${b.us.toFixed(0)} µs/req${b.ok ? '' : ` (${b.error})`}, manifest ${m.requestsPerSecond.toFixed(0)} req/s ${m.us.toFixed(0)} µs/req${m.ok ? '' : ` (${m.error})`}, peak ${(Number(hwm) / 1024).toFixed(1)} MB`;
        console.log(`round ${round + 1} [${flags || 'no flags'}] ${line}`);
        results.set(flags, [...(results.get(flags) ?? []), [Number(idle) / 1024, b.us, m.us, Number(hwm) / 1024]]);
      } finally {
        await mirror.stop();
        await rm(dataDir, { recursive: true, force: true });
      }
    }
  }
  console.log('\nmedians: idle MB, blob µs/req, manifest µs/req, peak MB');
  for (const [flags, runs] of results) {
    const median = (i: number) => [...runs.map((x) => x[i]!)].sort((a, b) => a - b)[Math.floor(runs.length / 2)]!.toFixed(1);
    console.log(`  [${flags || 'no flags'}] ${[0, 1, 2, 3].map(median).join(', ')}`);
  }
} finally {
  await upstream.destroy();
  await rm(work, { recursive: true, force: true });
}
