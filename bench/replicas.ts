/**
 * Two mirror replicas (issue 5, item 7): two child processes with their blobs on one s3rver
 * bucket, their metadata on Keyv/Redis and replication on through the same redis-server, each
 * advertising its own http://127.0.0.1:<port>. Ten curls at once, five on each replica, pull
 * the blob cold (one replica fills from the upstream, the other relays from it), then, from
 * two restarted replicas, warm (both read S3). Counts the upstream's blob GETs during the cold
 * run and the uploads S3 saw of the blob, and samples each replica's memory.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunningRedis } from '../test/helpers/redis.js';
import { startS3 } from '../test/helpers/s3.js';
import type { Bench, Setup } from './cases.js';
import { pull, sampleMemory, type ParallelPull } from './measure.js';
import { parallelRun, type Run } from './report.js';
import { startMirror, waitInS3, type MirrorProcess } from './servers.js';

const SECRET = 'bench-replica-secret-0123456789';

export interface ReplicasResult {
  cold: Run;
  warm: Run;
}

/** `n` curls started together, client k on `urls[k % urls.length]`. */
async function pullSplit(urls: string[], n: number, expectedBytes: number, timeoutSeconds: number): Promise<ParallelPull> {
  const started = performance.now();
  const clients = await Promise.all(Array.from({ length: n }, (_, k) => pull(urls[k % urls.length]!, expectedBytes, timeoutSeconds)));
  const seconds = (performance.now() - started) / 1000;
  return { ok: clients.every((c) => c.ok), clients, seconds, bytes: clients.reduce((sum, c) => sum + c.bytes, 0) };
}

export async function replicasCase(s: Setup, b: Bench, redis: RunningRedis): Promise<ReplicasResult> {
  const s3 = await startS3({ bucket: 'bench-replicas' });
  const key = s.digest.replace(':', '/');
  let uploads = 0;
  // An upload of the blob starts with PutObject (not of a part) or CreateMultipartUpload, to its key or a temp key naming it.
  s3.onRequest = ({ method, path, query }) => {
    const start = (method === 'PUT' && !('partNumber' in query)) || (method === 'POST' && 'uploads' in query);
    if (start && path.includes(key)) uploads++;
  };
  /** The replicas running, stopped at the end if a run failed before stopping them. */
  const running = new Set<MirrorProcess>();
  const stop = (pair: MirrorProcess[]): Promise<unknown> => Promise.all(pair.map((m) => (running.delete(m) ? m.stop() : undefined)));
  const startReplicas = async (phase: string): Promise<MirrorProcess[]> => {
    const pair = await Promise.all(
      ['a', 'b'].map(async (name) => {
        const dataDir = join(s.work, `replica-${name}-${phase}`);
        await mkdir(dataDir);
        const mirror = await startMirror({
          upstreamUrl: s.upstream.url,
          dataDir,
          work: s.work,
          nodeFlags: s.nodeFlags,
          s3,
          replica: { redis: redis.url, secret: SECRET },
        });
        running.add(mirror);
        s.onMirror?.(mirror.pid, `replica ${name}, ${s.clients} clients, ${phase}`);
        return mirror;
      }),
    );
    return pair;
  };
  const sampled = async (pair: MirrorProcess[], fn: (urls: string[], server: number[]) => Promise<Run>): Promise<Run> => {
    const samplers = await Promise.all(pair.map((m) => sampleMemory(m.pid)));
    try {
      const result = await fn(
        pair.map((m) => `${m.url}${b.blobPath}`),
        pair.map((m) => m.pid),
      );
      const memory = await Promise.all(samplers.map((x) => x.stop()));
      return { ...result, replicas: memory.map((m, i) => ({ url: pair[i]!.url, memory: m })) };
    } finally {
      await stop(pair);
    }
  };
  const many = async (urls: string[]): Promise<Run> => parallelRun(await pullSplit(urls, s.clients, s.size, s.timeouts.many));
  try {
    const cold = await sampled(await startReplicas('cold'), (urls, server) =>
      b.measured({ server, settled: () => waitInS3(s3, s.digest, s.size) }, () => many(urls)),
    );
    // The fill's holder may still be finishing its commit bookkeeping; a moment more for a late second upload to show.
    await new Promise((r) => setTimeout(r, 300));
    const coldUploads = uploads;
    const warm = await sampled(await startReplicas('warm'), (urls, server) => b.measured({ server }, () => many(urls)));
    return { cold: { ...cold, uploads: coldUploads }, warm: { ...warm, uploads: uploads - coldUploads } };
  } finally {
    s3.onRequest = undefined;
    await stop([...running]);
    await s3.destroy();
  }
}
