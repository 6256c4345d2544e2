/**
 * The cases: the baselines (the upstream registry itself, nginx, distribution's proxy mode)
 * and the mirror, cold and warm, with one client and with many, run in rounds. Every run
 * counts the upstream's blob GETs, for a cold one until the server has stored the blob.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunningRegistry } from '../test/helpers/registry.js';
import { pull, pullMany, sampleMemory } from './measure.js';
import { parallelRun, singleRun, type Round, type Run } from './report.js';
import { startMirror, startProxyRegistry, waitProxyStored, waitStored, type MirrorProcess, type Server, type Upstream } from './servers.js';

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
  /** Called with each mirror's pid and what it is for (to name its profile). */
  onMirror?: (pid: number, label: string) => void;
}

export interface Bench {
  one(url: string): Promise<Run>;
  many(url: string): Promise<Run>;
  /** Runs `fn`, waits for `settled` (a moment by default), and notes the upstream blob GETs meanwhile. */
  counted(fn: () => Promise<Run>, settled?: () => Promise<number>): Promise<Run>;
  blobPath: string;
}

export function bench(s: Setup): Bench {
  return {
    one: async (url) => singleRun(await pull(url, s.size, s.timeouts.one)),
    many: async (url) => parallelRun(await pullMany(url, s.clients, s.size, s.timeouts.many)),
    blobPath: `/v2/${s.repository}/blobs/${s.digest}`,
    async counted(fn, settled) {
      // The upstream's access log gets its line as each response ends.
      const before = await s.upstream.blobGets(s.digest);
      const result = await fn();
      const storedAfterMs = settled ? await settled() : undefined;
      await new Promise((r) => setTimeout(r, 200));
      const upstreamGets = (await s.upstream.blobGets(s.digest)) - before;
      return { ...result, upstreamGets, ...(storedAfterMs === undefined ? {} : { storedAfterMs }) };
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
  const r1 = { direct: await b.one(direct), nginx: await b.one(nginx) };
  const proxy = await proxyMode(s, b);
  const mirror = await mirrorOne(s, b, i);
  const r10 = { direct10: await b.many(direct), nginx10: await b.many(nginx) };
  const mirror10 = await mirrorMany(s, b, i);
  return {
    ...r1,
    proxyCold: proxy.cold,
    proxyWarm: proxy.warm,
    mirrorCold: mirror.cold,
    mirrorWarm: mirror.warm,
    ...r10,
    mirrorCold10: mirror10.cold,
    mirrorWarm10: mirror10.warm,
  };
}

/** distribution's proxy mode, fresh: first GET (cold), then, once it has stored its copy, the second (warm). */
async function proxyMode(s: Setup, b: Bench): Promise<{ cold: Run; warm: Run }> {
  const registry: RunningRegistry = await startProxyRegistry(s.upstream.url);
  try {
    const url = `${registry.url}${b.blobPath}`;
    const cold = await b.counted(() => b.one(url), () => waitProxyStored(registry, s.repository, s.digest));
    return { cold, warm: await b.counted(() => b.one(url)) };
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
      const cold = await b.counted(() => b.one(url), () => waitStored(url));
      return { cold, warm: await b.counted(() => b.one(url)) };
    } finally {
      await mirror.stop();
    }
  });
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
    const cold = await sampled(coldMirror, (url) => b.counted(() => b.many(url), () => waitStored(url)));
    const warmMirror = await mirrorIn(s, dataDir, `${s.clients} clients, warm, round ${i + 1}`);
    return { cold, warm: await sampled(warmMirror, (url) => b.counted(() => b.many(url))) };
  });
}

async function mirrorIn(s: Setup, dataDir: string, label: string): Promise<MirrorProcess> {
  const mirror = await startMirror({ upstreamUrl: s.upstream.url, dataDir, work: s.work, nodeFlags: s.nodeFlags });
  s.onMirror?.(mirror.pid, label);
  return mirror;
}

/** A fresh mirror data dir for `fn`, removed afterwards (512 MiB each). */
async function withDataDir<T>(s: Setup, name: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(s.work, `mirror-data-${name}`);
  await mkdir(dir);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
