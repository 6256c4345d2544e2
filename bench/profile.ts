/**
 * A summary of a V8 `.cpuprofile` (what `node --cpu-prof` writes): the functions that the
 * samples landed in most (self time), so that `npm run bench -- --cpu-prof` says where the
 * mirror's time went without opening a profiler UI. A native function is named with the
 * code that called it (the mirror's own, where it is near), since `read` alone says little.
 */
import { readFile } from 'node:fs/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: CallFrame; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
}

const name = (f: CallFrame): string => {
  const place = f.url ? ` ${f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'}${place}`;
};

/** The `top` functions by self time, one line each: ms, share of the samples, name and place. */
export async function summarizeProfile(file: string, top = 8): Promise<string[]> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n.id);

  const label = (id: number): string => {
    const frame = nodes.get(id)!.callFrame;
    if (frame.url || frame.functionName.startsWith('(')) return name(frame);
    let caller: CallFrame | undefined;
    for (let p = parents.get(id), depth = 0; p !== undefined && depth < 8; p = parents.get(p), depth++) {
      const f = nodes.get(p)!.callFrame;
      if (!f.url) continue;
      caller ??= f;
      if (!f.url.startsWith('node:')) {
        caller = f;
        break;
      }
    }
    return `${frame.functionName} (native, from ${caller ? name(caller) : 'the event loop'})`;
  };

  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const key = label(id);
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, us]) => `${(us / 1000).toFixed(0).padStart(6)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
}
