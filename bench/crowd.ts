/**
 * The mirror's memory: idle, a second after it started, and at its peak while 300 clients
 * (one curl process, every connection opened at once) pull one cold blob of 50 MB through a
 * fresh mirror, which fills it once from the upstream and hands it to all of them.
 */
import { mirrorIn, withDataDir, type Bench, type Setup } from './cases.js';
import { pullCrowd, sampleMemory } from './measure.js';
import { parallelRun, type Run } from './report.js';
import { waitStored } from './servers.js';
import type { Blob } from './throttled.js';

export interface CrowdSetup {
  blob: Blob;
  clients: number;
  timeoutSeconds: number;
}

export function crowdCase(s: Setup, c: CrowdSetup, b: Bench, i: number): Promise<Run> {
  return withDataDir(s, `crowd-${i + 1}`, async (dataDir) => {
    const mirror = await mirrorIn(s, dataDir, `${c.clients} clients on a cold ${c.blob.size}-byte blob, round ${i + 1}`);
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      const sampler = await sampleMemory(mirror.pid);
      const url = `${mirror.url}/v2/${c.blob.repository}/blobs/${c.blob.digest}`;
      const run = await b.measured({ server: [mirror.pid], digest: c.blob.digest, settled: () => waitStored(url) }, async () =>
        parallelRun(await pullCrowd(url, c.clients, c.blob.size, c.timeoutSeconds)),
      );
      const memory = await sampler.stop();
      return { ...run, memory, idleKiB: memory.startKiB };
    } finally {
      await mirror.stop();
    }
  });
}
