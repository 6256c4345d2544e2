/**
 * Child processes for tests: every one is tracked from spawn to exit, its output is kept
 * (the tail only) for error messages, and it is killed when the test process exits even if
 * a test forgot to. Tests still stop their processes in afterAll; the exit hook is the net.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const OUTPUT_TAIL = 16 * 1024;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Tracked {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<Exit>;
  /** The exit once it happened, else undefined. */
  exit(): Exit | undefined;
  /** The last 16 KiB of stdout and stderr, interleaved as they came. */
  output(): string;
  stdout(): string;
  stderr(): string;
}

const tracked = new Set<Tracked>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const p of tracked) p.child.kill('SIGKILL');
  });
}

/**
 * Spawns `command` with stdout and stderr piped and drained (a full pipe would block the
 * child). `keepAll` keeps the whole stdout/stderr instead of the tail, for short-lived tools.
 */
export function spawnTracked(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { keepAll?: boolean } = {},
): Tracked {
  hookExit();
  const { keepAll = false, ...spawnOptions } = options;
  const child = spawn(command, args, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  let out = '';
  let err = '';
  const cap = (s: string): string => (s.length > OUTPUT_TAIL ? s.slice(-OUTPUT_TAIL) : s);
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    tail = cap(tail + c);
    out = keepAll ? out + c : cap(out + c);
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    tail = cap(tail + c);
    err = keepAll ? err + c : cap(err + c);
  });
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) => {
    child.once('error', (e) => {
      // spawn failures (ENOENT) never emit 'exit'.
      tail += `\n[spawn error] ${e.message}`;
      exit ??= { code: null, signal: null };
      resolve(exit);
    });
    child.once('close', (code, signal) => {
      exit ??= { code, signal };
      resolve(exit);
    });
  });
  const proc: Tracked = {
    child,
    pid: child.pid ?? -1,
    exited,
    exit: () => exit,
    output: () => tail,
    stdout: () => out,
    stderr: () => err,
  };
  tracked.add(proc);
  void exited.then(() => tracked.delete(proc));
  return proc;
}

/**
 * SIGTERM, then SIGKILL if the process has not exited after `graceMs`; resolves once it
 * has exited. Safe to call on a process that already exited.
 */
export async function terminate(proc: Tracked, graceMs = 5_000): Promise<Exit> {
  if (proc.exit()) return proc.exited;
  proc.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      proc.child.kill('SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([proc.exited, killed]);
  clearTimeout(timer);
  return proc.exited;
}

/** Describes how a process ended, for error messages. */
export function describeExit(e: Exit): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code ?? '?'}`;
}

/** Terminates every process spawned through this module that is still running. For afterAll. */
export async function terminateAll(graceMs = 5_000): Promise<void> {
  await Promise.all([...tracked].map((p) => terminate(p, graceMs)));
}
