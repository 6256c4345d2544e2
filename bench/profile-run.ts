/**
 * `npm run bench:profile [-- --quick] [-- --no-build]`: the mirror under `node --cpu-prof`, a
 * fresh process for each of (i) one client pulling the big layer cold, (ii) one client pulling
 * it warm (a new process over the data dir of (i)), (iii) ten clients pulling it cold at once;
 * then, for each, the share of each stage over the pull (from the first request until the blob
 * is stored), the busiest functions, and the raw profiles in bench/results/profiles/<case>/
 * (git-ignored) for DevTools or speedscope. The profiler slows the mirror: read shares, not
 * speeds. Only the mirror's main thread is sampled (see profile.ts).
 *
 * --quick: a 64 MiB layer instead of 512 MiB.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { build, defer, log, pushLayerImage, ROOT, runMain, upstreamIn } from './harness.js';
import { mbps, pull, pullMany } from './measure.js';
import { profileStages, summarizeProfile, type Window } from './profile.js';
import { startMirror, waitStored } from './servers.js';

const PROFILES = join(ROOT, 'bench', 'results', 'profiles');
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

interface ProfileCase {
  name: string;
  label: string;
  dataDir: string;
  clients: number;
  cold: boolean;
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({ options: { quick: { type: 'boolean' }, 'no-build': { type: 'boolean' } } });
  if (!flags['no-build']) await build();
  await rm(PROFILES, { recursive: true, force: true });
  const work = await mkdtemp(join(tmpdir(), 'oci-mirror-profile-'));
  defer(() => rm(work, { recursive: true, force: true }));
  const upstream = await upstreamIn(work);
  const layer = await pushLayerImage(upstream, 'bench/big', (flags.quick ? 64 : 512) * 1024 * 1024, 'bench');
  const blobPath = `/v2/bench/big/blobs/${layer.digest}`;

  const one = join(work, 'data-one');
  const ten = join(work, 'data-ten');
  const cases: ProfileCase[] = [
    { name: 'cold-1', label: '(i) cold, 1 client', dataDir: one, clients: 1, cold: true },
    { name: 'warm-1', label: '(ii) warm, 1 client', dataDir: one, clients: 1, cold: false },
    { name: 'cold-10', label: '(iii) cold, 10 clients', dataDir: ten, clients: 10, cold: true },
  ];
  const out: string[] = [`# Where the mirror's time goes (node --cpu-prof, ${layer.size} bytes, main thread)`];
  for (const c of cases) {
    await mkdir(c.dataDir, { recursive: true });
    const dir = join(PROFILES, c.name);
    log(`${c.label}: mirror under --cpu-prof, profile in ${dir}`);
    const mirror = await startMirror({ upstreamUrl: upstream.url, dataDir: c.dataDir, work, nodeFlags: ['--cpu-prof', '--cpu-prof-dir', dir] });
    let window: Window;
    let speed: string;
    try {
      const url = `${mirror.url}${blobPath}`;
      const fromUs = nowUs();
      const result = c.clients === 1 ? await pull(url, layer.size, 300) : await pullMany(url, c.clients, layer.size, 600);
      if (!result.ok) throw new Error(`${c.label}: the pull failed: ${'error' in result ? result.error : 'a client failed'}`);
      if (c.cold) await waitStored(url);
      window = { fromUs, toUs: nowUs() };
      const bytes = result.bytes;
      speed = `${mbps(bytes, result.seconds).toFixed(0)} MB/s under the profiler`;
    } finally {
      // The profile is written when the process exits.
      await mirror.stop();
    }
    const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`${c.label}: the mirror wrote no profile in ${dir}`);
    const { totalMs, stages } = await profileStages(join(dir, file), window);
    out.push('', `## ${c.label}: ${totalMs.toFixed(0)} ms from the first request to the blob ${c.cold ? 'stored' : 'sent'}, ${speed}`, '');
    out.push('| stage | ms | % of the time | % of the busy time |', '| --- | ---: | ---: | ---: |');
    for (const s of stages) out.push(`| ${s.stage} | ${s.ms.toFixed(0)} | ${s.percent.toFixed(1)} | ${s.busyPercent === undefined ? '' : s.busyPercent.toFixed(1)} |`);
    out.push('', 'Busiest functions (self time, same window):', '', '```', ...(await summarizeProfile(join(dir, file), 10, window)), '```');
  }
  out.push('', `Raw profiles: ${PROFILES}/<case>/*.cpuprofile (open in Chrome DevTools, Performance tab, or speedscope).`);
  process.stdout.write(`\n${out.join('\n')}\n`);
}

await runMain(main);
