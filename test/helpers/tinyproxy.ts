/**
 * A real forward proxy for end-to-end tests: Debian's `tinyproxy` in the foreground, on a free
 * 127.0.0.1 port, with its config and log file in a fresh temp dir. Its log has one line per
 * request it handled (`Request (file descriptor 5): CONNECT 127.0.0.1:5000 HTTP/1.1`), which
 * is how a test sees what went through it.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeExit, spawnTracked, terminate, type Tracked } from './processes.js';
import { freePort } from './registry.js';

export const TINYPROXY_HINT = 'apt-get install tinyproxy';

export interface ProxiedLine {
  /** `CONNECT` for a tunnel, else the method of a request the proxy forwarded itself. */
  method: string;
  /** `host:port` for CONNECT, the absolute URL otherwise. */
  target: string;
}

export interface Tinyproxy {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** Every request the proxy has logged so far, in order. */
  requests(): Promise<ProxiedLine[]>;
  stop(): Promise<void>;
}

export async function startTinyproxy(): Promise<Tinyproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-tinyproxy-'));
  const logFile = join(dir, 'tinyproxy.log');
  let proc: Tracked | undefined;
  let port = 0;
  try {
    // Another process may take the free port between our probe and tinyproxy's bind.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      // No ConnectPort line: CONNECT to any port (the registries' ports are random).
      const config = [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 30', `LogFile "${logFile}"`, 'LogLevel Info', 'MaxClients 50', 'Allow 127.0.0.1'];
      await writeFile(join(dir, 'tinyproxy.conf'), `${config.join('\n')}\n`);
      proc = spawnTracked('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')]);
      if (await listening(proc, port)) break;
      await terminate(proc);
      if (attempt === 3) throw new Error(`tinyproxy did not start on 127.0.0.1:${port}:\n${proc.output()}`);
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const running = proc;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async requests() {
      const text = await readFile(logFile, 'utf8').catch(() => '');
      return [...text.matchAll(/Request \(file descriptor \d+\): (\S+) (\S+)/g)].map((m) => ({ method: m[1]!, target: m[2]! }));
    },
    async stop() {
      await terminate(running, 2_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Whether tinyproxy accepts connections on `port` within 5 s (false once it has exited). */
async function listening(proc: Tracked, port: number): Promise<boolean> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const exit = proc.exit();
    if (exit) {
      if (!proc.output().includes('Could not create listening sockets')) {
        throw new Error(`tinyproxy ${describeExit(exit)} at start:\n${proc.output()}`);
      }
      return false;
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
