/**
 * A throwaway containerd (Debian's, as root) with its own root, state and socket under a
 * temp dir, for pulling through the mirror exactly as a Kubernetes node would: with a
 * `hosts.toml` that names the mirror, so containerd adds `?ns=<registry>` itself.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitFor } from './http.js';
import { spawnTracked, terminate, type Tracked } from './processes.js';
import { run } from './tools.js';

export interface Containerd {
  address: string;
  hostsDir: string;
  /** Writes `<hostsDir>/<registry>/hosts.toml` sending pulls of `registry` to `mirrorUrl` first. */
  mirror(registry: string, serverUrl: string, mirrorUrl: string): Promise<void>;
  /** `ctr content fetch` (all platforms' content, no unpacking: no snapshotter needed). */
  fetch(ref: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startContainerd(dir: string): Promise<Containerd> {
  const address = join(dir, 'containerd.sock');
  const hostsDir = join(dir, 'certs.d');
  await mkdir(hostsDir, { recursive: true });
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      // Only the content store is needed; CRI would want a network and a kubelet.
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[ttrpc]',
      `  address = "${address}.ttrpc"`,
      '[debug]',
      `  address = "${address}.debug"`,
      '[metrics]',
      '  address = ""',
      '',
    ].join('\n'),
  );
  const proc: Tracked = spawnTracked('containerd', ['--config', config]);
  await waitFor(
    async () => {
      if (proc.exit()) throw new Error(`containerd exited: ${proc.output()}`);
      return run('ctr', ['--address', address, 'version'], { timeoutMs: 5_000 }).then(
        () => true,
        () => false,
      );
    },
    15_000,
    'containerd to serve',
  );
  return {
    address,
    hostsDir,
    async mirror(registry, serverUrl, mirrorUrl) {
      await mkdir(join(hostsDir, registry), { recursive: true });
      await writeFile(
        join(hostsDir, registry, 'hosts.toml'),
        `server = "${serverUrl}"\n\n[host."${mirrorUrl}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
    },
    async fetch(ref) {
      const { stdout } = await run('ctr', ['--address', address, 'content', 'fetch', '--hosts-dir', hostsDir, ref], {
        timeoutMs: 30_000,
      });
      return stdout;
    },
    stop: async () => {
      await terminate(proc, 3_000);
    },
  };
}
