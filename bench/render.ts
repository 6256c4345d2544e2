/**
 * `npm run bench:render`: writes bench/RESULTS.md again from bench/results/latest.json, the raw
 * results of the last run, with this checkout's report code: for a change to how results are
 * shown (a target, a table), not to what was measured. The file then says so.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { log, ROOT, runMain } from './harness.js';
import { buildCases, report, resultsHeader, writeText, type Context, type RunMeta } from './report.js';

type Saved = RunMeta & { rounds: Parameters<typeof report>[1]; clients: number; wrk: Context['wrk']; smallLayers?: number; blobs: Record<'big' | 'small' | 'crowd', { size: number }> };

await runMain(async () => {
  const saved = JSON.parse(await readFile(join(ROOT, 'bench', 'results', 'latest.json'), 'utf8')) as Saved;
  if (saved.flags.quick || saved.flags['cpu-prof']) throw new Error('latest.json is from a --quick or --cpu-prof run: not for bench/RESULTS.md');
  const context: Context = { sizes: { big: saved.blobs.big.size, small: saved.blobs.small.size, smallLayers: saved.smallLayers ?? 1, crowd: saved.blobs.crowd.size }, wrk: saved.wrk, clients: saved.clients };
  // HEAD only: the results file this writes is itself a change to the tree.
  const head = (await promisify(execFile)('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  const note = `Shown again by \`npm run bench:render\` at commit ${head}, from that run's bench/results/latest.json.\n`;
  const text = `${resultsHeader(saved)}${note}\n${report(buildCases(saved.rounds, saved.clients), saved.rounds, context)}`;
  await writeText(join(ROOT, 'bench', 'RESULTS.md'), text);
  log('wrote bench/RESULTS.md');
});
