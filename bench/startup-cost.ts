/**
 * What the mirror costs at start: the built CLI's idle memory (median of 5 starts: VmRSS a
 * couple of seconds after it first answered /healthz, with its anonymous/file split and V8's
 * own figures), and what each dependency costs to import, each in a fresh node process.
 *
 *   npm run bench:startup [-- --runs 5 --skip-imports --idle-ms 2000 --node-flags="--max-semi-space-size=2"]
 *
 * `--idle-ms 30000` shows a mirror that has sat idle long enough for V8's memory reducer to run
 * (it gives back the young generation that start-up grew, some 10 to 20 s after start).
 *
 * The idle starts use the embedded default config (no file: 127.0.0.1:5000, ./data in a temp
 * dir) when port 5000 is free, and always the same config from a file on a free port (listen
 * and storage only), which is how a server really runs: that row also carries the YAML parser.
 * Each start is node with the server's flags (src/node-flags.ts), as `npm start` runs it.
 * Quick and repeatable (about a minute), unlike `npm run bench`; Linux only (/proc).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { describeExit, spawnTracked, terminate } from '../test/helpers/processes.js';
import { freePort } from '../test/helpers/registry.js';
import { SERVER_NODE_FLAGS } from '../src/node-flags.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const READY_TIMEOUT_MS = 15_000;

/** What every import row is measured against: node itself and the HTTP stack every server loads. */
const MODULES = [
  'koa',
  'koa-compose',
  '@koa/router',
  'undici',
  'keyv',
  '@keyv/redis',
  '@aws-sdk/client-s3',
  'zod',
  'pino',
  'prom-client',
  'yaml',
  'tldts',
  'bcryptjs',
  'picomatch',
  'range-parser',
  'uplot',
  // The project's own entry points, each with everything it imports.
  './dist/src/upstream/egress.js',
  './dist/src/config.js',
  './dist/middleware/mirror/index.js',
  './dist/src/server.js',
  './dist/src/index.js',
];

interface Figures {
  rssKiB: number;
  anonKiB: number;
  fileKiB: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

const statusKiB = (status: string, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const mb = (bytes: number): string => (bytes / 1048576).toFixed(1);

/**
 * A preload that answers SIGUSR2 with process.memoryUsage() in a file: the only way to V8's
 * figures of a process this script did not write. CommonJS, a few lines: it costs next to nothing.
 */
const PRELOAD = `process.on('SIGUSR2', () => require('node:fs').writeFileSync(process.env.STARTUP_COST_OUT, JSON.stringify(process.memoryUsage())));\n`;

async function waitHealthy(url: string, exited: () => string | undefined, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const exit = exited();
    if (exit) throw new Error(`the mirror ${exit} before it answered:\n${output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no answer from ${url} after ${READY_TIMEOUT_MS} ms:\n${output()}`);
}

/** One start of the CLI in `dir`: its idle figures. `config` undefined: the embedded default (port 5000). */
async function idleOnce(dir: string, nodeFlags: string[], config: string | undefined, port: number, idleMs: number): Promise<Figures> {
  const out = join(dir, 'memory.json');
  await rm(out, { force: true });
  const args = [...SERVER_NODE_FLAGS, ...nodeFlags, '--require', join(dir, 'preload.cjs'), CLI, ...(config ? ['--config', config] : [])];
  const proc = spawnTracked(process.execPath, args, { cwd: dir, env: { ...process.env, LOG_LEVEL: 'warn', STARTUP_COST_OUT: out } });
  try {
    await waitHealthy(`http://127.0.0.1:${port}/healthz`, () => (proc.exit() ? describeExit(proc.exit()!) : undefined), () => proc.output());
    await new Promise((r) => setTimeout(r, idleMs));
    const status = await readFile(`/proc/${proc.pid}/status`, 'utf8');
    proc.child.kill('SIGUSR2');
    let memory: NodeJS.MemoryUsage | undefined;
    for (let i = 0; i < 100 && !memory; i++) {
      await new Promise((r) => setTimeout(r, 20));
      memory = await readFile(out, 'utf8').then((s) => JSON.parse(s) as NodeJS.MemoryUsage, () => undefined);
    }
    if (!memory) throw new Error('the mirror did not write its memoryUsage()');
    const { heapTotal, heapUsed, external } = memory;
    return { rssKiB: statusKiB(status, 'VmRSS'), anonKiB: statusKiB(status, 'RssAnon'), fileKiB: statusKiB(status, 'RssFile'), heapTotal, heapUsed, external };
  } finally {
    await terminate(proc, 10_000);
  }
}

const portFree = async (port: number): Promise<boolean> =>
  fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) }).then(
    () => false,
    (e: Error & { cause?: { code?: string } }) => e.cause?.code === 'ECONNREFUSED',
  );

function printIdle(label: string, runs: Figures[]): void {
  const m = (f: (x: Figures) => number) => median(runs.map(f));
  const rss = runs.map((r) => (r.rssKiB / 1024).toFixed(1)).join(' ');
  console.log(`${label}`);
  console.log(`  VmRSS median ${(m((r) => r.rssKiB) / 1024).toFixed(1)} MB (runs: ${rss})`);
  console.log(`  of which anonymous ${(m((r) => r.anonKiB) / 1024).toFixed(1)} MB, file-backed (the node binary, mostly) ${(m((r) => r.fileKiB) / 1024).toFixed(1)} MB`);
  console.log(`  V8 heap used ${mb(m((r) => r.heapUsed))} MB of ${mb(m((r) => r.heapTotal))} MB reserved, external ${mb(m((r) => r.external))} MB`);
}

async function idle(runs: number, nodeFlags: string[], idleMs: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'startup-cost-'));
  try {
    await writeFile(join(dir, 'preload.cjs'), PRELOAD);
    const flags = `${nodeFlags.length ? ` with ${nodeFlags.join(' ')}` : ''}, ${idleMs / 1000} s after it answered`;
    if (await portFree(5000)) {
      const results: Figures[] = [];
      for (let i = 0; i < runs; i++) results.push(await idleOnce(dir, nodeFlags, undefined, 5000, idleMs));
      printIdle(`idle, default config (no file)${flags}:`, results);
    } else {
      console.log('idle, default config: skipped, port 5000 is taken');
    }
    const results: Figures[] = [];
    for (let i = 0; i < runs; i++) {
      const port = await freePort();
      const config = join(dir, 'mirror.yaml');
      await writeFile(config, `listen: 127.0.0.1:${port}\nstorage: { type: fs, path: ${join(dir, 'data')} }\n`);
      results.push(await idleOnce(dir, nodeFlags, config, port, idleMs));
    }
    printIdle(`idle, the same config from a file${flags}:`, results);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One import in a fresh process, after node:http (which every server loads), with a full GC on
 * each side: what the module adds to RSS, to its anonymous part, and to the V8 heap.
 */
const IMPORT_PROBE = `
import { readFileSync } from 'node:fs';
await import('node:http');
const read = () => { const s = readFileSync('/proc/self/status', 'utf8'); const f = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(s)[1]); return { rss: f('VmRSS'), anon: f('RssAnon'), heap: process.memoryUsage().heapUsed }; };
gc(); const before = read();
await import(process.argv[1]);
gc(); const after = read();
console.log(JSON.stringify({ rssKiB: after.rss - before.rss, anonKiB: after.anon - before.anon, heap: after.heap - before.heap }));
`;

interface ImportCost {
  rssKiB: number;
  anonKiB: number;
  heap: number;
}

async function importOnce(specifier: string, nodeFlags: string[]): Promise<ImportCost> {
  const target = specifier.startsWith('./') ? new URL(specifier, `file://${ROOT}/`).href : specifier;
  const child = spawn(process.execPath, [...nodeFlags, '--expose-gc', '--input-type=module', '-e', IMPORT_PROBE, target], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += String(c)));
  child.stderr.on('data', (c: Buffer) => (stderr += String(c)));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  if (code !== 0) throw new Error(`importing ${specifier} failed (${code}): ${stderr.slice(-500)}`);
  return JSON.parse(stdout) as ImportCost;
}

async function imports(runs: number, nodeFlags: string[]): Promise<void> {
  console.log(`\nimport cost, each in a fresh process after node:http (median of ${runs}; RSS includes node's own code it pages in)`);
  console.log(`  ${'module'.padEnd(36)} ${'RSS MB'.padStart(7)} ${'anon MB'.padStart(8)} ${'heap MB'.padStart(8)}`);
  for (const m of MODULES) {
    const results: ImportCost[] = [];
    for (let i = 0; i < runs; i++) results.push(await importOnce(m, nodeFlags));
    const f = (g: (x: ImportCost) => number) => median(results.map(g));
    console.log(`  ${m.padEnd(36)} ${(f((r) => r.rssKiB) / 1024).toFixed(1).padStart(7)} ${(f((r) => r.anonKiB) / 1024).toFixed(1).padStart(8)} ${mb(f((r) => r.heap)).padStart(8)}`);
  }
}

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    'node-flags': { type: 'string', default: '' },
    'skip-imports': { type: 'boolean', default: false },
    'idle-ms': { type: 'string', default: '2000' },
  },
});
const runs = Number(values.runs);
const nodeFlags = values['node-flags'].split(' ').filter(Boolean);
await readFile(CLI).catch(() => {
  throw new Error(`${CLI} is missing: npm run build first`);
});
await idle(runs, nodeFlags, Number(values['idle-ms']));
if (!values['skip-imports']) await imports(Math.min(runs, 3), nodeFlags);
