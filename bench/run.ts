/**
 * `npm run bench [-- --no-build] [-- --no-s3] [-- --cpu-prof]`: pulls one 512 MiB incompressible layer
 * straight from a docker-registry, from nginx (sendfile), through distribution's proxy mode
 * and through the mirror (a child process from dist/, built first unless --no-build), cold
 * and warm, by one client and by ten at once; prints MB/s, the ratios the project tracks and
 * the mirror's peak RSS, and writes bench/results/latest.json. It measures; it asserts nothing.
 *
 * Every round also runs the mirror with its blobs on S3 (s3rver on 127.0.0.1, in this process,
 * a fresh one and bucket per round) and its metadata on fs, one client, cold and warm, and
 * reports both as ratios to the fs-backed mirror of the same round, with the wait from the
 * last byte to the blob committed in S3. That adds about 35 s; --no-s3 leaves it out.
 *
 * The last round also runs two replicas (issue 5): two mirror processes with their blobs on one
 * s3rver bucket, metadata on Keyv/Redis and replication on (one redis-server), ten clients split
 * five and five, cold then warm, as ratios to the single mirror on S3, with the upstream GETs,
 * the uploads to S3 and each replica's peak RSS. That adds about 25 s; --no-replicas leaves it
 * out, and so does a machine without redis-server.
 *
 * --cpu-prof runs every mirror under `node --cpu-prof` (profiles in bench/results/profiles)
 * and prints where each spent its time; the profiler slows the mirror, so such a run's
 * numbers are not comparable with others.
 *
 * Every process it starts and every temp dir it makes is removed at the end, on failure and
 * on Ctrl-C too. The blob itself is kept in os.tmpdir() for the next run.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { bigLayer, pushBigImage } from '../test/helpers/images.js';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../test/helpers/redis.js';
import { run, which } from '../test/helpers/tools.js';
import { bench, round, warmUp, type Setup } from './cases.js';
import { repeat } from './measure.js';
import { summarizeProfile } from './profile.js';
import { buildCases, ratios, table, writeJson } from './report.js';
import { startNginx, startUpstream } from './servers.js';

const SIZE = 512 * 1024 * 1024;
const REPO = 'bench/big';
const REPS = 3;
const ROOT = resolve(import.meta.dirname, '..');
const RESULTS = join(ROOT, 'bench', 'results');
const PROFILES = join(RESULTS, 'profiles');

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

/** Cleanups, run last-in first-out, each once, from `finally` or from a signal. */
const cleanups: Array<() => Promise<unknown>> = [];
const defer = (fn: () => Promise<unknown>): void => void cleanups.push(fn);
async function cleanUp(): Promise<void> {
  for (let fn = cleanups.pop(); fn; fn = cleanups.pop()) await fn().catch((e: unknown) => log(`cleanup: ${String(e)}`));
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      'no-build': { type: 'boolean' },
      'cpu-prof': { type: 'boolean' },
      'no-s3': { type: 'boolean' },
      'no-replicas': { type: 'boolean' },
    },
  });
  const started = Date.now();
  if (!flags['no-build']) {
    log('building dist/');
    // The package's own build: it also copies the status page's assets, which tsc alone would not.
    await run('npm', ['run', '--silent', '--prefix', ROOT, 'build']);
  }
  if (flags['cpu-prof']) await rm(PROFILES, { recursive: true, force: true });

  const work = await mkdtemp(join(tmpdir(), 'oci-mirror-bench-'));
  defer(() => rm(work, { recursive: true, force: true }));
  const upstream = await startUpstream(work);
  defer(() => upstream.destroy());

  let t = Date.now();
  const layer = await bigLayer(SIZE, 'bench');
  if (!layer.path) throw new Error('bigLayer gave no file');
  log(`blob ${layer.digest} (${layer.size} bytes) ready in ${Date.now() - t} ms at ${layer.path}`);
  t = Date.now();
  await pushBigImage(upstream, { name: REPO, tag: 'v1', size: SIZE, seed: 'bench' });
  log(`pushed ${REPO}:v1 with that layer to ${upstream.url} in ${Date.now() - t} ms`);

  const nginx = await startNginx(work, layer.path);
  defer(() => nginx.stop());

  let redis: RunningRedis | undefined;
  if (flags['no-replicas']) log('two replicas: left out (--no-replicas)');
  else if (!which('redis-server')) log(`two replicas: left out, redis-server is not installed (${REDIS_INSTALL_HINT})`);
  else {
    redis = await startRedis();
    const running = redis;
    defer(() => running.destroy());
  }

  const mirrors = new Map<number, string>();
  const setup: Setup = {
    upstream,
    nginx,
    repository: REPO,
    digest: layer.digest,
    size: layer.size,
    clients: 10,
    timeouts: { one: 120, many: 240 },
    work,
    nodeFlags: flags['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', PROFILES] : [],
    s3: !flags['no-s3'],
    ...(redis ? { redis } : {}),
    rounds: REPS,
    onMirror: (pid, label) => mirrors.set(pid, label),
  };
  const b = bench(setup);

  await warmUp(setup, b);
  const rounds = await repeat(REPS, (i) => {
    const replicas = setup.redis && i === REPS - 1 ? ', two replicas on S3 + Redis' : '';
    log(`round ${i + 1} of ${REPS}: direct, nginx, proxy mode, mirror${setup.s3 ? ', mirror on S3' : ''}${replicas}; 1 client, then ${setup.clients}`);
    return round(setup, b, i);
  });
  const cases = buildCases(rounds, setup.clients);
  process.stdout.write(`\n${table(cases)}\n`);
  if (flags['cpu-prof']) process.stdout.write(await profiles(mirrors));

  const out = join(RESULTS, 'latest.json');
  await writeJson(out, {
    date: new Date().toISOString(),
    commit: (await run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).catch(() => ({ stdout: '?' }))).stdout.trim(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    profiled: flags['cpu-prof'] ?? false,
    s3: setup.s3,
    replicas: setup.redis !== undefined,
    blob: { digest: layer.digest, size: layer.size },
    reps: REPS,
    clients: setup.clients,
    cases,
    ratios: ratios(cases),
    seconds: (Date.now() - started) / 1000,
  });
  log(`wrote ${out} after ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/** Where each profiled mirror spent its time; node names a profile `CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`. */
async function profiles(mirrors: Map<number, string>): Promise<string> {
  const out = ['', `profiles in ${PROFILES} (the profiler slows the mirror: these numbers are not comparable):`];
  for (const file of (await readdir(PROFILES).catch(() => [])).sort()) {
    const pid = Number(file.split('.')[3]);
    out.push('', `mirror ${mirrors.get(pid) ?? `pid ${pid}`} (${file}), self time:`, ...(await summarizeProfile(join(PROFILES, file))));
  }
  return `${out.join('\n')}\n`;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (e) {
  process.exitCode = 1;
  log(`failed: ${(e as Error).stack ?? String(e)}`);
} finally {
  await cleanUp();
}
