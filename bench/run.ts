/**
 * `npm run bench [-- --runs N] [-- --quick] [-- --no-build] [-- --no-s3] [-- --no-replicas] [-- --no-workers] [-- --cpu-prof]`
 *
 * Pulls one 512 MiB incompressible layer straight from a docker-registry, from nginx
 * (sendfile), through distribution's proxy mode and through the mirror (a child process from
 * dist/, built first unless --no-build), cold and warm, by one client and by ten at once; then
 * small requests with wrk (a manifest by tag within its TTL, a 4 KB blob; mirror, proxy mode,
 * nginx), the upstream behind a throttled link (1 and 2.5 Gbit/s, a 10 MB and the big layer,
 * direct and through a cold mirror), and 300 clients on one cold 50 MB blob (the mirror's peak
 * RSS, and its idle RSS before), and the floor under the memory figures (bench/floor.mjs: the
 * design card's stack alone, idle, and the least Node tee with ten clients). Every case runs once per round, `--runs` rounds (5 by
 * default), so that ratios compare runs taken close together: each ratio is computed within
 * a round, then its median and range are printed. Beside every figure: the CPU seconds per GB
 * of the process(es) serving it, read from /proc, which do not depend on how busy the machine is.
 *
 * Prints the results as Markdown and writes them to bench/RESULTS.md (with the date, the commit,
 * Node's version and the machine), every run to bench/results/latest.json. It measures; it
 * asserts nothing.
 *
 * Every round also runs the mirror with its blobs on S3 (s3rver on 127.0.0.1, in this process,
 * a fresh one and bucket per round) and its metadata on fs, one client, cold and warm, as
 * ratios to the fs-backed mirror of the same round; --no-s3 leaves it out. The last round also
 * runs two replicas (issue 5): two mirror processes with their blobs on one s3rver bucket,
 * metadata on Keyv/Redis and replication on (one redis-server), ten clients split five and
 * five, cold then warm; --no-replicas leaves it out, and so does a machine without redis-server.
 * The last round also runs the mirror with `workers: 1` and then `workers: 2` (issue 12): ten
 * clients cold and warm on the big layer, and wrk on the 4 KB blob, side by side; --no-workers
 * leaves it out.
 *
 * --quick: one round, a 64 MiB big layer, a 10 MB crowd blob, wrk for 2 s, no S3 and no
 * replicas; to check the harness (about a minute with the build), not to quote. Its results go
 * to bench/results/latest.md instead of bench/RESULTS.md, and so do --cpu-prof's.
 *
 * --cpu-prof runs every mirror under `node --cpu-prof` (profiles in bench/results/profiles)
 * and prints where each spent its time; the profiler slows the mirror, so such a run's
 * numbers are not comparable with others. `npm run bench:profile` is the focused tool.
 *
 * Every process it starts and every temp dir it makes is removed at the end, on failure and
 * on Ctrl-C too. The layers themselves are kept in os.tmpdir() for the next run.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../test/helpers/redis.js';
import { which } from '../test/helpers/tools.js';
import { bench, round, warmUp, type Setup } from './cases.js';
import { build, commitName, defer, log, pushLayerImage, ROOT, runMain, upstreamIn } from './harness.js';
import { hasWrk, repeat } from './measure.js';
import { summarizeProfile } from './profile.js';
import { buildCases, memory, ratios, report, resultsHeader, writeJson, writeText, type Context } from './report.js';
import { nginxFiles, pushSmallImage } from './requests.js';
import { startNginx } from './servers.js';
import { startLinks } from './throttled.js';

const MiB = 1024 * 1024;
/** The small layers the throttled cases pull once each a round (one with --quick): see throttled.ts. */
const SMALL_LAYERS = 5;
const RESULTS = join(ROOT, 'bench', 'results');
const PROFILES = join(RESULTS, 'profiles');

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      runs: { type: 'string' },
      quick: { type: 'boolean' },
      'no-build': { type: 'boolean' },
      'cpu-prof': { type: 'boolean' },
      'no-s3': { type: 'boolean' },
      'no-replicas': { type: 'boolean' },
      'no-workers': { type: 'boolean' },
    },
  });
  const quick = flags.quick ?? false;
  const runs = flags.runs === undefined ? (quick ? 1 : 5) : Number(flags.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs wants a whole number from 1 to 50, not ${flags.runs}`);
  const sizes = { big: quick ? 64 * MiB : 512 * MiB, small: 10_000_000, crowd: quick ? 10_000_000 : 50_000_000 };
  const started = Date.now();
  const loadBefore = loadavg();
  // Read first: the work tree as built and measured, whatever changes during the run.
  const commit = await commitName();
  if (!flags['no-build']) await build();
  if (flags['cpu-prof']) await rm(PROFILES, { recursive: true, force: true });

  const work = await mkdtemp(join(tmpdir(), 'oci-mirror-bench-'));
  defer(() => rm(work, { recursive: true, force: true }));
  const upstream = await upstreamIn(work);
  const big = await pushLayerImage(upstream, 'bench/big', sizes.big, 'bench');
  const small = await pushLayerImage(upstream, 'bench/ten', sizes.small, 'bench-small');
  const smalls = [small];
  for (let k = 2; k <= (quick ? 1 : SMALL_LAYERS); k++) smalls.push(await pushLayerImage(upstream, `bench/ten-${k}`, sizes.small, `bench-small-${k}`));
  const crowdBlob = sizes.crowd === sizes.small ? small : await pushLayerImage(upstream, 'bench/crowd', sizes.crowd, 'bench-crowd');
  const wrkOptions = { threads: 2, connections: 32, seconds: quick ? 2 : 10 };
  const wrkAvailable = hasWrk();
  if (!wrkAvailable) log('small requests (wrk): left out, wrk is not installed (apt-get install wrk)');
  // The 4 KB image: wrk's cases, and each throttled mirror's warm-up.
  const tiny = await pushSmallImage(upstream, 'bench/small', wrkOptions);
  const requests = wrkAvailable ? tiny : undefined;

  const nginx = await startNginx(work, big.path!, nginxFiles(tiny));
  defer(() => nginx.stop());
  const links = await startLinks(upstream.url, defer);

  let redis: RunningRedis | undefined;
  if (flags['no-replicas'] || quick) log(`two replicas: left out (${quick ? '--quick' : '--no-replicas'})`);
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
    repository: 'bench/big',
    digest: big.digest,
    size: big.size,
    clients: 10,
    timeouts: { one: 120, many: 240 },
    work,
    nodeFlags: flags['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', PROFILES] : [],
    s3: !flags['no-s3'] && !quick,
    workers: !flags['no-workers'],
    ...(redis ? { redis } : {}),
    rounds: runs,
    onMirror: (pid, label) => mirrors.set(pid, label),
    ...(requests ? { requests } : {}),
    throttled: {
      small: smalls.map((layer, k) => ({ repository: k === 0 ? 'bench/ten' : `bench/ten-${k + 1}`, digest: layer.digest, size: layer.size })),
      links,
      warmUp: { repository: tiny.repository, digest: tiny.blob.digest, size: tiny.blob.bytes.length },
    },
    crowd: {
      blob: { repository: crowdBlob === small ? 'bench/ten' : 'bench/crowd', digest: crowdBlob.digest, size: crowdBlob.size },
      clients: 300,
      timeoutSeconds: 300,
    },
  };
  const b = bench(setup);

  await warmUp(setup, b);
  const rounds = await repeat(runs, (i) => {
    const replicas = (setup.redis && i === runs - 1 ? ', two replicas on S3 + Redis' : '') + (setup.workers && i === runs - 1 ? ', workers: 1 and 2' : '');
    log(
      `round ${i + 1} of ${runs}: direct, nginx, proxy mode, mirror${setup.s3 ? ', mirror on S3' : ''}${replicas}; 1 client, then ${setup.clients}; ` +
        `${requests ? 'small requests (wrk), ' : ''}throttled upstream, ${setup.crowd.clients} clients`,
    );
    return round(setup, b, i);
  });
  const cases = buildCases(rounds, setup.clients);
  const context: Context = { sizes: { big: big.size, small: small.size, smallLayers: smalls.length, crowd: crowdBlob.size }, wrk: { available: wrkAvailable, ...wrkOptions }, clients: setup.clients };
  const seconds = (Date.now() - started) / 1000;
  const loadAfter = loadavg();
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', node: process.version };
  const header = resultsHeader({ date: new Date().toISOString(), commit, machine, load: { before: loadBefore, after: loadAfter }, flags, runs, seconds });
  const text = `${header}\n${report(cases, rounds, context)}`;
  process.stdout.write(`\n${text}`);
  if (flags['cpu-prof']) process.stdout.write(await profiles(mirrors));

  const comparable = !quick && !flags['cpu-prof'];
  const md = comparable ? join(ROOT, 'bench', 'RESULTS.md') : join(RESULTS, 'latest.md');
  await writeText(md, text);
  const out = join(RESULTS, 'latest.json');
  await writeJson(out, {
    date: new Date().toISOString(),
    commit,
    machine,
    load: { before: loadBefore, after: loadAfter },
    flags,
    profiled: flags['cpu-prof'] ?? false,
    s3: setup.s3,
    replicas: setup.redis !== undefined,
    smallLayers: smalls.length,
    blobs: { big: { digest: big.digest, size: big.size }, small: { digest: small.digest, size: small.size }, crowd: { digest: crowdBlob.digest, size: crowdBlob.size } },
    runs,
    clients: setup.clients,
    wrk: context.wrk,
    rounds,
    cases: Object.fromEntries(Object.entries(cases).map(([k, c]) => [k, { ...c, runs: undefined }])),
    ratios: ratios(rounds),
    memory: memory(rounds),
    seconds,
  });
  log(`wrote ${md} and ${out} after ${seconds.toFixed(0)} s`);
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

await runMain(main);
