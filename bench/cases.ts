/**
 * The cases on the big layer: the baselines (the upstream registry itself, nginx, distribution's
 * proxy mode) and the mirror, cold and warm, with one client and with many, run in rounds;
 * unless told not to, also the mirror with its blobs on S3 (s3rver) and one client, with
 * s3rver's own GET of the object as its baseline. Every run counts the upstream's blob GETs
 * and the CPU seconds of the serving processes and of the upstream, for a cold one until the
 * server has stored the blob. A round then runs the small-request, throttled and crowd cases
 * (requests.ts, throttled.ts, crowd.ts).
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { RunningRedis } from '../test/helpers/redis.js';
import { startS3, type RunningS3 } from '../test/helpers/s3.js';
import { crowdCase, type CrowdSetup } from './crowd.js';
import { floorCases } from './floor.js';
import { cpuSeconds, ownCpuSeconds, pull, pullMany, sampleMemory, treeCpuSeconds } from './measure.js';
import { replicasCase } from './replicas.js';
import { workersCases } from './workers.js';
import { parallelRun, singleRun, type Round, type Run } from './report.js';
import { requestCases, type RequestsSetup } from './requests.js';
import { throttledCases, type ThrottledSetup } from './throttled.js';
import {
  startMirror,
  startProxyRegistry,
  s3Key,
  waitInS3,
  waitProxyStored,
  waitStored,
  type MirrorProcess,
  type Server,
  type Upstream,
} from './servers.js';

export interface Setup {
  upstream: Upstream;
  nginx: Server;
  repository: string;
  digest: string;
  size: number;
  clients: number;
  /** curl's --max-time for one client, and for each of many at once. */
  timeouts: { one: number; many: number };
  /** Scratch space for the mirrors' config files and data dirs. */
  work: string;
  /** Node flags for every mirror child (e.g. --cpu-prof). */
  nodeFlags: string[];
  /** Whether each round also runs the mirror with its blobs on S3 (s3rver in this process). */
  s3: boolean;
  /** When given, the last round also runs two replicas over one s3rver bucket and this Redis, 10 clients split 5/5. */
  redis?: RunningRedis;
  /** Whether the last round also runs the mirror with `workers: 1` and `workers: 2`, side by side. */
  workers: boolean;
  /** Rounds in the run: the two-replica and the workers cases run in the last. */
  rounds: number;
  /** Called with each mirror's pid and what it is for (to name its profile). */
  onMirror?: (pid: number, label: string) => void;
  /** The small-request cases (wrk); left out when wrk is not installed. */
  requests?: RequestsSetup;
  /** The cases with the upstream behind a throttled link. */
  throttled: ThrottledSetup;
  /** Many clients on one cold blob, and the idle mirror's memory. */
  crowd: CrowdSetup;
}

export interface Measured {
  /** The pids of the serving process(es): their CPU seconds, and their children's, are the run's `serverCpu`. */
  server: readonly number[];
  /** Waited for after `fn` and before the counts are read (a cold run: until stored); its result is `storedAfterMs`. */
  settled?: () => Promise<number>;
  /** Whose upstream blob GETs to count; the big layer's by default. */
  digest?: string;
}

export interface Bench {
  one(url: string): Promise<Run>;
  many(url: string): Promise<Run>;
  /**
   * Runs `fn`, waits for `settled`, and notes the upstream's blob GETs meanwhile (after a moment
   * for its access log) and the CPU seconds of the server and of the upstream until settled.
   */
  measured(m: Measured, fn: () => Promise<Run>): Promise<Run>;
  blobPath: string;
}

export function bench(s: Setup): Bench {
  return {
    one: async (url) => singleRun(await pull(url, s.size, s.timeouts.one)),
    many: async (url) => parallelRun(await pullMany(url, s.clients, s.size, s.timeouts.many)),
    blobPath: `/v2/${s.repository}/blobs/${s.digest}`,
    async measured({ server, settled, digest = s.digest }, fn) {
      // No case pays for the page cache an earlier one left dirty (distribution does not fsync):
      // 2 GB of it left to the kernel's writeback cut a cold pull through a 2.5 Gbit/s link from
      // 1.00 to 0.80 of direct (3 pairs). A case's own writes, fsync included, still count.
      await promisify(execFile)('sync');
      // The upstream's access log gets its line as each response ends.
      const before = await s.upstream.blobGets(digest);
      const [serverBefore, upstreamBefore] = [await treeCpuSeconds(server), await treeCpuSeconds(s.upstream.pids)];
      const result = await fn();
      const storedAfterMs = settled ? await settled() : undefined;
      const serverCpu = (await treeCpuSeconds(server)) - serverBefore;
      const upstreamCpu = (await treeCpuSeconds(s.upstream.pids)) - upstreamBefore;
      await new Promise((r) => setTimeout(r, 200));
      const upstreamGets = (await s.upstream.blobGets(digest)) - before;
      return { ...result, upstreamGets, serverCpu, upstreamCpu, ...(storedAfterMs === undefined ? {} : { storedAfterMs }) };
    },
  };
}

/** One untimed pull from the upstream and from nginx, so that every baseline reads from the page cache. */
export async function warmUp(s: Setup, b: Bench): Promise<void> {
  await b.one(`${s.upstream.url}${b.blobPath}`);
  await b.one(`${s.nginx.url}/blob`);
}

/**
 * Every case once. Rounds rather than each case three times in a row: on a shared machine
 * whose speed drifts, the ratios then compare numbers taken close together.
 */
export async function round(s: Setup, b: Bench, i: number): Promise<Round> {
  const direct = `${s.upstream.url}${b.blobPath}`;
  const nginx = `${s.nginx.url}/blob`;
  const fromUpstream = { server: s.upstream.pids };
  const fromNginx = { server: [s.nginx.pid] };
  const r1 = { direct: await b.measured(fromUpstream, () => b.one(direct)), nginx: await b.measured(fromNginx, () => b.one(nginx)) };
  const proxy = await proxyMode(s, b);
  const mirror = await mirrorOne(s, b, i);
  // Right after the fs-backed mirror, so that their ratio compares runs taken close together.
  const s3 = s.s3 ? await mirrorOnS3(s, b, i) : undefined;
  // Once per run (about 25 s), right after the single mirror on S3 it is compared with.
  const replicas = s.redis && i === s.rounds - 1 ? await replicasCase(s, b, s.redis) : undefined;
  const r10 = { direct10: await b.measured(fromUpstream, () => b.many(direct)), nginx10: await b.measured(fromNginx, () => b.many(nginx)) };
  const mirror10 = await mirrorMany(s, b, i);
  // Right after the mirror's ten clients, whose peak it is the floor of.
  const floor = await floorCases(s, b);
  // Once per run (about a minute), after the single mirror with ten clients they are compared with.
  const workers = s.workers && i === s.rounds - 1 ? await workersCases(s, b, i) : {};
  const requests = s.requests ? await requestCases(s, s.requests, b, i) : {};
  const throttled = await throttledCases(s, s.throttled, b, i);
  const crowd = await crowdCase(s, s.crowd, b, i);
  return {
    ...r1,
    proxyCold: proxy.cold,
    proxyWarm: proxy.warm,
    mirrorCold: mirror.cold,
    mirrorWarm: mirror.warm,
    ...(s3 ? { s3Cold: s3.cold, s3Warm: s3.warm, s3Direct: s3.direct } : {}),
    ...(replicas ? { replicasCold10: replicas.cold, replicasWarm10: replicas.warm } : {}),
    ...r10,
    mirrorCold10: mirror10.cold,
    mirrorWarm10: mirror10.warm,
    ...floor,
    ...workers,
    ...requests,
    ...throttled,
    crowdCold: crowd,
  };
}

/** distribution's proxy mode, fresh: first GET (cold), then, once it has stored its copy, the second (warm). */
async function proxyMode(s: Setup, b: Bench): Promise<{ cold: Run; warm: Run }> {
  const registry = await startProxyRegistry(s.upstream.url);
  try {
    const url = `${registry.url}${b.blobPath}`;
    const server = registry.pids;
    const cold = await b.measured({ server, settled: () => waitProxyStored(registry, s.repository, s.digest) }, () => b.one(url));
    return { cold, warm: await b.measured({ server }, () => b.one(url)) };
  } finally {
    await registry.destroy();
  }
}

/** The mirror with one client, a fresh process and data dir: first GET (cold), then, once stored, the second (warm). */
function mirrorOne(s: Setup, b: Bench, i: number): Promise<{ cold: Run; warm: Run }> {
  return withDataDir(s, `one-${i + 1}`, async (dataDir) => {
    const mirror = await mirrorIn(s, dataDir, `1 client, cold then warm, round ${i + 1}`);
    try {
      const url = `${mirror.url}${b.blobPath}`;
      const server = [mirror.pid];
      const cold = await b.measured({ server, settled: () => waitStored(url) }, () => b.one(url));
      return { cold, warm: await b.measured({ server }, () => b.one(url)) };
    } finally {
      await mirror.stop();
    }
  });
}

/**
 * The mirror with its blobs on S3 and metadata on fs, one client, over a fresh s3rver and
 * bucket: first GET (cold: the fill streams into a multipart upload), the wait until S3 has
 * the blob under its final key, then the second GET (warm: a ranged GetObject), then curl's
 * GET of that object from s3rver itself (anonymous, which s3rver allows). s3rver runs in this
 * process, so this process's CPU time during a run is s3rver's (and the bench's little
 * bookkeeping).
 */
async function mirrorOnS3(s: Setup, b: Bench, i: number): Promise<{ cold: Run; warm: Run; direct: Run }> {
  const s3 = await startS3({ bucket: `bench-round-${i + 1}` });
  try {
    return await withDataDir(s, `s3-${i + 1}`, async (dataDir) => {
      const mirror = await mirrorIn(s, dataDir, `blobs on S3, 1 client, cold then warm, round ${i + 1}`, s3);
      try {
        const url = `${mirror.url}${b.blobPath}`;
        let lastByte = 0;
        let completeSent: number | undefined;
        s3.onRequest = ({ method, query }) => {
          if (method === 'POST' && typeof query.uploadId === 'string') completeSent ??= performance.now();
        };
        const timed = async (): Promise<Run> => {
          const run = await b.one(url);
          lastByte = performance.now();
          return run;
        };
        const server = [mirror.pid];
        const settled = async (): Promise<number> => {
          await waitInS3(s3, s.digest, s.size);
          return Math.round(performance.now() - lastByte);
        };
        const cold = await b.measured({ server, settled }, () => withCpu(mirror, timed));
        s3.onRequest = undefined;
        const completeSentAfterMs = completeSent === undefined ? undefined : Math.round(completeSent - lastByte);
        const uploadsLeft = await s3.uploadsOnDisk();
        const warm = await b.measured({ server }, () => withCpu(mirror, () => b.one(url)));
        // s3rver runs in this process: its CPU is the bench's own.
        const direct = await b.measured({ server: [process.pid] }, () => b.one(`${s3.endpoint}/${s3.bucket}/${s3Key(s.digest)}`));
        return { cold: { ...cold, uploadsLeft, completeSentAfterMs }, warm, direct };
      } finally {
        await mirror.stop();
      }
    });
  } finally {
    await s3.destroy();
  }
}

/** `fn` with the CPU seconds that the mirror and this process (s3rver) spent while it ran, and the mirror's peak RSS meanwhile. */
async function withCpu(mirror: MirrorProcess, fn: () => Promise<Run>): Promise<Run> {
  const sampler = await sampleMemory(mirror.pid);
  const [mirrorBefore, ownBefore] = [await cpuSeconds(mirror.pid), ownCpuSeconds()];
  const result = await fn();
  const cpu = { mirror: (await cpuSeconds(mirror.pid)) - mirrorBefore, s3rver: ownCpuSeconds() - ownBefore };
  return { ...result, cpu, memory: await sampler.stop() };
}

/**
 * The mirror with many clients at once, memory sampled: cold on a fresh data dir (they all
 * join one fill), then warm from a restarted process over that data dir, so that each
 * process's VmHWM is its own case's.
 */
function mirrorMany(s: Setup, b: Bench, i: number): Promise<{ cold: Run; warm: Run }> {
  const sampled = async (mirror: MirrorProcess, fn: (url: string) => Promise<Run>): Promise<Run> => {
    try {
      const sampler = await sampleMemory(mirror.pid);
      const result = await fn(`${mirror.url}${b.blobPath}`);
      return { ...result, memory: await sampler.stop() };
    } finally {
      await mirror.stop();
    }
  };
  return withDataDir(s, `many-${i + 1}`, async (dataDir) => {
    const coldMirror = await mirrorIn(s, dataDir, `${s.clients} clients, cold, round ${i + 1}`);
    const cold = await sampled(coldMirror, (url) => b.measured({ server: [coldMirror.pid], settled: () => waitStored(url) }, () => b.many(url)));
    const warmMirror = await mirrorIn(s, dataDir, `${s.clients} clients, warm, round ${i + 1}`);
    return { cold, warm: await sampled(warmMirror, (url) => b.measured({ server: [warmMirror.pid] }, () => b.many(url))) };
  });
}

export async function mirrorIn(s: Setup, dataDir: string, label: string, s3?: RunningS3, upstreamUrl = s.upstream.url): Promise<MirrorProcess> {
  const mirror = await startMirror({ upstreamUrl, dataDir, work: s.work, nodeFlags: s.nodeFlags, s3 });
  s.onMirror?.(mirror.pid, label);
  return mirror;
}

/** A fresh mirror data dir for `fn`, removed afterwards (512 MiB each with fs storage). */
export async function withDataDir<T>(s: Setup, name: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(s.work, `mirror-data-${name}`);
  await mkdir(dir);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
