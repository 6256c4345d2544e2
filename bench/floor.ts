/**
 * The floor under the mirror's memory rows (bench/floor.mjs): the design card's stack alone,
 * idle a second after it answered, as the mirror's idle figure is taken; and the least Node tee
 * with the round's clients on the cold big layer, its peak RSS sampled as the mirror's is.
 */
import type { Bench, Setup } from './cases.js';
import { sampleMemory, statusKiB } from './measure.js';
import type { Run } from './report.js';
import { startFloor } from './servers.js';

export async function floorCases(s: Setup, b: Bench): Promise<{ stackIdle: Run; teeCold10: Run }> {
  const stack = await startFloor(['stack']);
  let idleKiB: number;
  try {
    await new Promise((r) => setTimeout(r, 1_000));
    idleKiB = await statusKiB(stack.pid, 'VmRSS');
  } finally {
    await stack.stop();
  }
  const tee = await startFloor(['tee', `${s.upstream.url}${b.blobPath}`, s.clients]);
  try {
    const sampler = await sampleMemory(tee.pid);
    const run = await b.measured({ server: [tee.pid] }, () => b.many(`${tee.url}/blob`));
    return { stackIdle: { ok: true, seconds: 0, bytes: 0, idleKiB }, teeCold10: { ...run, memory: await sampler.stop() } };
  } finally {
    await tee.stop();
  }
}
