/**
 * V8 heap settings for the mirror's own server process (the CLI), not for an application that
 * mounts the middlewares: a process's heap is its owner's business. The flag is one V8 reads
 * when it resizes, so setting it at run time works; the operator's own (`node --… cli.js`,
 * NODE_OPTIONS) wins.
 *
 * Start-up sizes the young generation for life. Loading the modules keeps most of what it
 * allocates, so V8 grows the young generation to its maximum (2 × 16 MB) within the first second
 * and keeps it until its memory reducer runs some 10 s later: about 7 MB of idle RSS
 * (`npm run bench:startup`). The growth factor is 1 until the server listens, then V8's default.
 */
import v8 from 'node:v8';

const STARTUP_GROWTH = '--semi-space-growth-factor';
/** V8's own young-generation growth factor, restored once the server listens. */
const DEFAULT_GROWTH = 2;

/**
 * Sets the start-up growth factor unless the operator set one (`given`: the process's execArgv
 * and NODE_OPTIONS); the returned `started` ends it.
 */
export function heapPolicy(given: readonly string[], setFlags: (flags: string) => void = (f) => v8.setFlagsFromString(f)): { started(): void } {
  // V8 takes `--a-b` and `--a_b` alike.
  const operatorSet = (flag: string) => given.some((arg) => [flag, `--${flag.slice(2).replaceAll('-', '_')}`].some((s) => arg === s || arg.startsWith(`${s}=`)));
  let startup = !operatorSet(STARTUP_GROWTH);
  if (startup) setFlags(`${STARTUP_GROWTH}=1`);
  return {
    started() {
      if (!startup) return;
      startup = false;
      setFlags(`${STARTUP_GROWTH}=${DEFAULT_GROWTH}`);
    },
  };
}

// Set when this module is evaluated: src/cli.ts imports it before the modules whose loading it concerns.
const policy = heapPolicy([...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)]);

/** Start-up is over (the server listens, or an admin command has loaded): the young generation may grow with the load. */
export const startupDone = (): void => policy.started();
