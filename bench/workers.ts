/**
 * `workers: 1` against `workers: 2` (issue 12, item 8): the mirror's CLI over fs storage, once
 * with one process and once with a primary and two workers on the one port, each over a fresh
 * data dir: ten clients on the big layer cold (one fill; one upstream GET between the workers,
 * the other relaying), then warm, then the warm 4 KB blob under wrk. Each case's CPU is the
 * whole process tree's. On this 2-core machine, with curl or wrk and the upstream on the same
 * cores, a second worker has little room to show a gain; the figures stand side by side so that
 * a machine with more cores can be read the same way.
 */
import { readFile } from 'node:fs/promises';
import { withDataDir, type Bench, type Setup } from './cases.js';
import { wrk } from './measure.js';
import { wrkRun, type Round } from './report.js';
import { startMirror, waitStored } from './servers.js';

/** Forked workers that never show up fail the case, not the whole bench. */
const WORKERS_TIMEOUT_MS = 15_000;

export async function workersCases(s: Setup, b: Bench, i: number): Promise<Round> {
  const one = await workersCase(s, b, i, 1);
  const two = await workersCase(s, b, i, 2);
  return {
    workers1Cold10: one.cold,
    workers2Cold10: two.cold,
    workers1Warm10: one.warm,
    workers2Warm10: two.warm,
    ...(one.small && two.small ? { workers1Small: one.small, workers2Small: two.small } : {}),
  };
}

async function workersCase(s: Setup, b: Bench, i: number, workers: 1 | 2): Promise<{ cold: Round['workers1Cold10']; warm: Round['workers1Warm10']; small?: Round['workers1Small'] }> {
  return withDataDir(s, `workers${workers}-${i + 1}`, async (dataDir) => {
    const mirror = await startMirror({ upstreamUrl: s.upstream.url, dataDir, work: s.work, nodeFlags: s.nodeFlags, workers });
    s.onMirror?.(mirror.pid, `workers: ${workers}, ${s.clients} clients, round ${i + 1}`);
    try {
      // /healthz answers once one worker listens: wait for all of them, or the first runs meet one.
      if (workers > 1) await childrenOf(mirror.pid, workers);
      const url = `${mirror.url}${b.blobPath}`;
      const server = [mirror.pid];
      const cold = await b.measured({ server, settled: () => waitStored(url) }, () => b.many(url));
      const warm = await b.measured({ server }, () => b.many(url));
      const r = s.requests;
      if (!r) return { cold, warm };
      const small = `${mirror.url}/v2/${r.repository}/blobs/${r.blob.digest}`;
      const first = await fetch(small, { signal: AbortSignal.timeout(30_000) });
      await first.arrayBuffer();
      await waitStored(small);
      const run = await b.measured({ server, digest: r.blob.digest }, async () => wrkRun(await wrk(small, r.wrk), r.blob.bytes.length));
      return { cold, warm, small: run };
    } finally {
      await mirror.stop();
    }
  });
}

/** Waits until `pid` has `n` children, and a moment more for their listeners to open. */
async function childrenOf(pid: number, n: number): Promise<void> {
  const deadline = Date.now() + WORKERS_TIMEOUT_MS;
  const children = async () => (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).length;
  while ((await children()) < n) {
    if (Date.now() > deadline) throw new Error(`the mirror (pid ${pid}) did not fork ${n} workers within ${WORKERS_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 2_000));
}
