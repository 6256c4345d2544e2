/**
 * A real redis-server (Debian's) for tests: loopback only, a free port, no persistence
 * (`--save '' --appendonly no`), its working directory a fresh temp dir. Guard the suite with
 * `requireTool('redis-server', REDIS_INSTALL_HINT)`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeExit, spawnTracked, terminate, type Tracked } from './processes.js';
import { freePort } from './registry.js';

export const REDIS_INSTALL_HINT = 'apt-get install redis-server';

export interface RunningRedis {
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** Kills it and removes its directory. Call from afterAll. */
  destroy(): Promise<void>;
  logs(): string;
}

export async function startRedis({ readyTimeoutMs = 10_000 } = {}): Promise<RunningRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-redis-'));
  let proc: Tracked | undefined;
  let port = 0;
  try {
    // Another process may take the free port between our probe and redis' bind.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
      proc = spawnTracked('redis-server', args);
      try {
        await waitReady(proc, port, readyTimeoutMs);
        break;
      } catch (e) {
        await terminate(proc);
        if (!proc.output().includes('Address already in use') || attempt === 3) throw e;
      }
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const running = proc;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async destroy() {
      await terminate(running, 2_000);
      await rm(dir, { recursive: true, force: true });
    },
    logs: () => running.output(),
  };
}

/** Resolves once redis answers PING with PONG. */
async function waitReady(proc: Tracked, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const exit = proc.exit();
    if (exit) throw new Error(`redis-server ${describeExit(exit)} before it was ready:\n${proc.output()}`);
    try {
      if ((await ping(port)).startsWith('+PONG')) return;
      last = 'PING was not answered with PONG';
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on port ${port} was not ready after ${timeoutMs} ms (${last}):\n${proc.output()}`);
}

function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    socket.setTimeout(1_000, () => socket.destroy(new Error('PING timed out')));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      answer += d.toString();
      if (answer.includes('\r\n')) socket.end();
    });
    socket.once('close', () => resolve(answer));
    socket.once('error', reject);
  });
}
