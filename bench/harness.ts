/**
 * What `npm run bench` and `npm run bench:profile` share: logging to stderr, cleanups run
 * last-in first-out from `finally` and from SIGINT/SIGTERM, the package build (dist/ is what
 * the mirror runs from), and the upstream docker-registry holding the images every case pulls.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { bigLayer, pushBigImage, type Layer } from '../test/helpers/images.js';
import { run } from '../test/helpers/tools.js';
import { startUpstream, type Upstream } from './servers.js';

export const ROOT = resolve(import.meta.dirname, '..');

export const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

/** Cleanups, run last-in first-out, each once, from `finally` or from a signal. */
const cleanups: Array<() => Promise<unknown>> = [];
export const defer = (fn: () => Promise<unknown>): void => void cleanups.push(fn);
async function cleanUp(): Promise<void> {
  for (let fn = cleanups.pop(); fn; fn = cleanups.pop()) await fn().catch((e: unknown) => log(`cleanup: ${String(e)}`));
}

/** Runs `main`, then every cleanup, also when it fails or on Ctrl-C; exit code 1 on failure, 130 on a signal. */
export async function runMain(main: () => Promise<void>): Promise<void> {
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
}

/** The package's own build: it also copies the status page's assets, which tsc alone would not. */
export async function build(): Promise<void> {
  log('building dist/');
  await run('npm', ['run', '--silent', '--prefix', ROOT, 'build'], { timeoutMs: 300_000 });
}

/** `git rev-parse --short HEAD`, with `-dirty` when the work tree has uncommitted changes. */
export async function commitName(): Promise<string> {
  const git = (...args: string[]) => promisify(execFile)('git', ['-C', ROOT, ...args]).then((r) => r.stdout.trim());
  try {
    const head = await git('rev-parse', '--short', 'HEAD');
    // The bench's own output (a results file not yet committed) does not make the code it measured dirty.
    return (await git('status', '--porcelain', '--untracked-files=no', '--', '.', ':!bench/RESULTS.md')) ? `${head}-dirty` : head;
  } catch {
    return 'unknown';
  }
}

/** An image of one incompressible layer of about `size` bytes (kept in os.tmpdir() across runs), pushed to the upstream. */
export async function pushLayerImage(upstream: Upstream, repository: string, size: number, seed: string): Promise<Layer> {
  const t = Date.now();
  const layer = await bigLayer(size, seed);
  if (!layer.path) throw new Error('bigLayer gave no file');
  await pushBigImage(upstream, { name: repository, tag: 'v1', size, seed });
  log(`${repository}:v1, layer ${layer.digest} (${layer.size} bytes), ready and pushed in ${Date.now() - t} ms`);
  return layer;
}

/** The upstream registry in `work`, stopped and removed by the cleanups. */
export async function upstreamIn(work: string): Promise<Upstream> {
  const upstream = await startUpstream(work);
  defer(() => upstream.destroy());
  return upstream;
}
