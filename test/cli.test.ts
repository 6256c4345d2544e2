/**
 * The command line as an operator meets it: config errors exit 2 before anything starts,
 * SIGTERM lets a fill finish, and kill -9 mid-fill leaves nothing a restart would serve.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { raw, waitFor } from './helpers/http.js';
import { spawnTracked, terminate, type Tracked } from './helpers/processes.js';
import { SERVER_NODE_FLAGS } from '../src/node-flags.js';

const CLI = join(process.cwd(), 'src', 'cli.ts');
const MiB = 1024 * 1024;

let dir: string;
let upstream: FakeUpstream;
const running: Tracked[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-mirror-cli-'));
  upstream = await startFakeUpstream();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => terminate(p, 2_000)));
});
afterAll(async () => {
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], nodeFlags: string[] = []): Tracked {
  // node itself, with tsx as a loader: the tsx command would fork a child that SIGKILL misses.
  const p = spawnTracked(process.execPath, [...nodeFlags, '--import', 'tsx', CLI, ...args], { env: { ...process.env, LOG_LEVEL: 'info' } });
  running.push(p);
  return p;
}

async function writeConfig(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** Starts the CLI on a free port and waits for its "listening" log line. */
async function startMirror(dataDir: string, nodeFlags: string[] = []): Promise<{ proc: Tracked; url: string }> {
  const config = await writeConfig(
    `mirror-${Math.random().toString(36).slice(2)}.yaml`,
    `listen: "127.0.0.1:0"\nstorage: { type: fs, path: ${JSON.stringify(dataDir)} }\nupstreams:\n  - name: registry.test\n    url: ${upstream.url}\nshutdownGrace: 20s\n`,
  );
  const proc = cli(['--config', config], nodeFlags);
  let url = '';
  await waitFor(
    () => {
      const m = /"listen":"([^"]+)"/.exec(proc.stdout());
      if (m) url = `http://${m[1]}`;
      if (proc.exit()) throw new Error(`mirror exited: ${proc.output()}`);
      return Boolean(m);
    },
    20_000,
    'the mirror to listen',
  );
  return { proc, url };
}

async function filesUnder(path: string): Promise<Array<{ path: string; size: number }>> {
  const entries = await readdir(path, { recursive: true, withFileTypes: true }).catch(() => []);
  const files = await Promise.all(
    entries.filter((e) => e.isFile()).map(async (e) => {
      const p = join(e.parentPath, e.name);
      // A metadata record's temporary file is renamed away a moment after it is written.
      const info = await stat(p).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
      return info && { path: p, size: info.size };
    }),
  );
  return files.filter((f) => f !== undefined);
}

describe('oci-mirror command line', () => {
  it.each([
    ['an unknown key', 'listen: "127.0.0.1:0"\nstorge: {}\n', /storge/],
    ['a bad upstream URL', 'upstreams:\n  - name: x\n    url: ftp://example\n', /upstreams\[0\]\.url/],
    ['a bad duration', 'cache: { tagTtl: soon }\n', /cache\.tagTtl/],
    ['a bad listen address', 'listen: "nowhere"\n', /listen/],
    ['broken YAML', 'listen: [unclosed\n', /not valid YAML/],
  ])('exits 2 naming the problem for %s', async (_label, text, pattern) => {
    const proc = cli(['--config', await writeConfig('bad.yaml', text)]);
    const exit = await proc.exited;
    expect(exit.code).toBe(2);
    expect(proc.stderr()).toMatch(pattern);
    expect(proc.stdout()).not.toContain('listening');
  });

  it("says in its listening line which of node's server flags it was started without", async () => {
    const listening = (p: Tracked) => JSON.parse(p.stdout().split('\n').find((l) => l.includes('mirror listening'))!) as { missingNodeFlags?: string[] };
    const bare = await startMirror(join(dir, 'flags-bare'));
    expect(listening(bare.proc).missingNodeFlags).toEqual([...SERVER_NODE_FLAGS]);
    const flagged = await startMirror(join(dir, 'flags-given'), [...SERVER_NODE_FLAGS]);
    expect(listening(flagged.proc)).not.toHaveProperty('missingNodeFlags');
    await Promise.all([terminate(bare.proc, 10_000), terminate(flagged.proc, 10_000)]);
  });

  it('exits 2 for a config file that does not exist', async () => {
    const proc = cli(['--config', join(dir, 'missing.yaml')]);
    expect((await proc.exited).code).toBe(2);
    expect(proc.stderr()).toContain('cannot read config file');
  });

  it('lets a fill in flight finish on SIGTERM and exits 0', async () => {
    const data = randomBytes(4 * MiB);
    const d = upstream.addBlob(data);
    upstream.faults.set(d, { delayMs: 20, chunkSize: 256 * 1024 }); // ~0.3 s of transfer
    const dataDir = join(dir, 'sigterm');
    const { proc, url } = await startMirror(dataDir);
    const pull = raw(`${url}/v2/team/app/blobs/${d}`, { hangUpAfter: 1 });
    await pull;
    proc.child.kill('SIGTERM');
    const exit = await proc.exited;
    expect(exit.code).toBe(0);
    const blobs = await filesUnder(join(dataDir, 'blobs'));
    expect(blobs).toEqual([{ path: expect.stringContaining(d.slice(7)), size: data.length }]);
  });

  it('serves no partial blob after kill -9 mid-fill, and a restart cleans up', async () => {
    const data = randomBytes(8 * MiB);
    const d = upstream.addBlob(data);
    let release!: () => void;
    upstream.faults.set(d, { holdAt: 3 * MiB, hold: new Promise<void>((r) => (release = r)) });
    const dataDir = join(dir, 'kill9');
    const first = await startMirror(dataDir);
    const pull = raw(`${first.url}/v2/team/app/blobs/${d}`).catch(() => undefined);
    await waitFor(
      async () => (await filesUnder(join(dataDir, 'tmp'))).some((f) => f.size >= 3 * MiB - 1),
      10_000,
      'the fill to spool 3 MiB',
    );
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    await pull;
    release();
    expect(await filesUnder(join(dataDir, 'blobs'))).toEqual([]);
    expect((await filesUnder(join(dataDir, 'tmp'))).length).toBeGreaterThan(0);

    upstream.faults.delete(d);
    const second = await startMirror(dataDir);
    expect(await filesUnder(join(dataDir, 'tmp'))).toEqual([]);
    const head = await raw(`${second.url}/v2/team/app/blobs/${d}`, { method: 'HEAD' });
    expect(head.headers['x-mirror-cache']).toBe('MISS'); // not served from a partial copy
    const res = await raw(`${second.url}/v2/team/app/blobs/${d}`);
    expect(res.status).toBe(200);
    expect(res.body.equals(data)).toBe(true);
    await waitFor(async () => (await filesUnder(join(dataDir, 'blobs'))).length === 1, 10_000, 'the blob to commit');
  });

  describe('check', () => {
    /** A config that names one file under every key that takes one, each written unless `missing` names it. */
    async function configNaming(label: string, missing: string[] = []): Promise<{ path: string; data: string }> {
      const files: Record<string, string> = {
        htpasswd: `alice:${bcrypt.hashSync('wonderland', 4)}\n`,
        password: 'robot-password\n',
        token: 'static-upstream-token\n',
        'ci-token': 'a-ci-token-of-16-chars-or-more\n',
        admin: 'an-admin-token-of-16-chars\n',
        replicas: 'a-replica-secret-of-16-chars\n',
      };
      const base = join(dir, `check-${label}`);
      for (const [name, text] of Object.entries(files)) if (!missing.includes(name)) await writeFile(`${base}-${name}`, text);
      const data = `${base}-data`;
      const text = [
        'listen: "127.0.0.1:0"',
        `storage: { type: fs, path: ${JSON.stringify(data)} }`,
        'upstreams:',
        `  - { name: a.test, url: "${upstream.url}", username: robot, passwordFile: ${JSON.stringify(`${base}-password`)} }`,
        `  - { name: b.test, url: "${upstream.url}", tokenFile: ${JSON.stringify(`${base}-token`)} }`,
        `auth: { htpasswd: ${JSON.stringify(`${base}-htpasswd`)}, tokens: [{ name: ci, tokenFile: ${JSON.stringify(`${base}-ci-token`)} }] }`,
        `admin: { enabled: true, tokenFile: ${JSON.stringify(`${base}-admin`)} }`,
        `replication: { redis: "redis://127.0.0.1:9", advertise: "http://127.0.0.1:9", secretFile: ${JSON.stringify(`${base}-replicas`)} }`,
      ].join('\n');
      return { path: await writeConfig(`check-${label}.yaml`, `${text}\n`), data };
    }

    it('reads the certificates too: the listener’s and each upstream’s', async () => {
      const base = join(dir, 'check-tls');
      const text = [
        'listen: "127.0.0.1:0"',
        `tls: { certFile: ${JSON.stringify(`${base}-listener.crt`)}, keyFile: ${JSON.stringify(`${base}-listener.key`)} }`,
        'upstreams:',
        `  - { name: a.test, url: "${upstream.url}", tls: { caFile: ${JSON.stringify(`${base}-ca.crt`)} } }`,
      ].join('\n');
      const proc = cli(['check', '--config', await writeConfig('check-tls.yaml', `${text}\n`)]);
      expect((await proc.exited).code).toBe(2);
      expect(proc.stderr().trim().split('\n').map((l) => /^oci-mirror: ([^:]+):/.exec(l)?.[1])).toEqual(['upstreams[a.test].tls.caFile', 'tls.certFile']);
    });

    it('exits 0 once the config is valid and every file it names was read, starting nothing', async () => {
      const { path, data } = await configNaming('good');
      const proc = cli(['check', '--config', path]);
      expect((await proc.exited).code).toBe(0);
      expect(proc.stdout()).toContain('is valid');
      expect(proc.stdout()).not.toContain('listening');
      expect(existsSync(data)).toBe(false); // no storage was opened
    });

    it('exits 2 naming every file it could not read, with the message start-up gives', async () => {
      const { path } = await configNaming('missing', ['htpasswd', 'password', 'token', 'ci-token', 'admin', 'replicas']);
      const proc = cli(['check', '--config', path]);
      expect((await proc.exited).code).toBe(2);
      const lines = proc.stderr().trim().split('\n');
      expect(lines.map((l) => /^oci-mirror: ([^:]+):/.exec(l)?.[1])).toEqual([
        'upstreams[a.test].passwordFile',
        'upstreams[b.test].tokenFile',
        'auth.htpasswd',
        'auth.tokens[0].tokenFile',
        'admin.tokenFile',
        'replication.secretFile',
      ]);
      // Start-up stops at the first of them, word for word.
      const { path: one } = await configNaming('one-missing', ['htpasswd']);
      const [checked, started] = [cli(['check', '--config', one]), cli(['--config', one])];
      expect([(await checked.exited).code, (await started.exited).code]).toEqual([2, 2]);
      expect(checked.stderr()).toMatch(/^oci-mirror: auth\.htpasswd: ENOENT/);
      expect(checked.stderr()).toBe(started.stderr());
    });

    it('exits 2 for an invalid config, as start-up does', async () => {
      const path = await writeConfig('check-bad.yaml', 'upstreams:\n  - name: x\n    url: ftp://example\n');
      const proc = cli(['check', '-c', path]);
      expect((await proc.exited).code).toBe(2);
      expect(proc.stderr()).toMatch(/upstreams\[0\]\.url/);
    });
  });
});
