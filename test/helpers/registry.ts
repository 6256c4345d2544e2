/**
 * A real CNCF distribution registry (`docker-registry`, 2.8 on Debian) for end-to-end tests:
 * loopback only, a free port, filesystem storage in a fresh temp dir, its config written
 * there as YAML. It can also run as distribution's own pull-through cache (`proxy`), which
 * the benchmark compares against.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describeExit, spawnTracked, terminate, type Tracked } from './processes.js';

export const REGISTRY_BINARY = 'docker-registry';

/** distribution's `auth` section. Only one scheme may be configured at a time. */
export type RegistryAuth =
  | { htpasswd: { realm: string; path: string } }
  | {
      token: {
        realm: string;
        service: string;
        issuer: string;
        rootcertbundle: string;
        autoredirect?: boolean;
      };
    };

export interface RegistryOptions {
  /** Run as distribution's pull-through cache of `remoteurl` (pushes are then refused). */
  proxy?: { remoteurl: string; username?: string; password?: string };
  /** Authentication; none when absent. The registry is ready when `/v2/` answers 200 or, with auth, 401. */
  auth?: RegistryAuth;
  /**
   * Serve HTTPS with this certificate and key; with `clientcas`, only to clients with a
   * certificate one of those CAs signed. Readiness is then a TCP connect (a TLS probe would
   * need the client certificate).
   */
  tls?: { certificate: string; key: string; clientcas?: string[] };
  /** Anything else, deep-merged over the generated configuration. */
  config?: Record<string, unknown>;
  /** How long to wait for `/v2/` to answer; 10 s by default. */
  readyTimeoutMs?: number;
  /** The binary; `docker-registry` on PATH by default. */
  binary?: string;
}

export interface RunningRegistry {
  /** `http://127.0.0.1:PORT` (`https://` with `tls`) */
  readonly url: string;
  /** `127.0.0.1:PORT`, for image references. */
  readonly host: string;
  readonly port: number;
  /** The temp dir: `config.yml` and `data/` (the storage root). */
  readonly dir: string;
  /** Kills the registry (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. Storage is kept. */
  stop(): Promise<void>;
  /** Stops it if it runs, then starts it again on the same port with the same storage. */
  restart(): Promise<void>;
  /** Stops it and removes its temp dir. Call from afterAll. */
  destroy(): Promise<void>;
  /** The tail of its output, for failure messages. */
  logs(): string;
}

export async function startRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  const { readyTimeoutMs = 10_000, binary = REGISTRY_BINARY } = options;
  const dir = await mkdtemp(join(tmpdir(), 'oci-registry-'));
  const configPath = join(dir, 'config.yml');
  const secret = randomBytes(16).toString('hex');
  let proc: Tracked | undefined;
  let port = 0;

  const launch = async (): Promise<void> => {
    await writeFile(configPath, stringify(registryConfig(dir, port, secret, options)));
    proc = spawnTracked(binary, ['serve', configPath], { env: cleanEnv() });
    if (options.tls) await waitListening(proc, port, readyTimeoutMs);
    else await waitReady(proc, `http://127.0.0.1:${port}`, readyTimeoutMs, options.auth !== undefined);
  };

  try {
    // Another process may take the free port between our probe and the registry's bind.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await launch();
        break;
      } catch (e) {
        const lost = proc?.output().includes('address already in use') ?? false;
        if (proc) await terminate(proc);
        if (!lost || attempt === 3) throw e;
      }
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  const stop = async (): Promise<void> => {
    if (proc) await terminate(proc);
  };
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    dir,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
    destroy: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
    logs: () => proc?.output() ?? '',
  };
}

function registryConfig(dir: string, port: number, secret: string, options: RegistryOptions): Record<string, unknown> {
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'error', accesslog: { disabled: true } },
    storage: {
      filesystem: { rootdirectory: join(dir, 'data') },
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret, ...(options.tls ? { tls: options.tls } : {}) },
  };
  if (options.proxy) config.proxy = { ...options.proxy };
  if (options.auth) config.auth = options.auth;
  return options.config ? deepMerge(config, options.config) : config;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** distribution reads any REGISTRY_* variable as a config override; a developer's shell must not leak in. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no port was assigned'))));
    });
  });
}

async function waitListening(proc: Tracked, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const exit = proc.exit();
    if (exit) throw new Error(`docker-registry ${describeExit(exit)} before it was ready:\n${proc.output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      }).on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  await terminate(proc);
  throw new Error(`docker-registry on 127.0.0.1:${port} did not listen within ${timeoutMs} ms:\n${proc.output()}`);
}

async function waitReady(proc: Tracked, url: string, timeoutMs: number, auth: boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const exit = proc.exit();
    if (exit) {
      throw new Error(`docker-registry ${describeExit(exit)} before it was ready:\n${proc.output()}`);
    }
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.status === 200 || (auth && res.status === 401)) return;
      last = `GET /v2/ answered ${res.status}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await terminate(proc);
  throw new Error(`docker-registry at ${url} was not ready after ${timeoutMs} ms (${last}):\n${proc.output()}`);
}
