/**
 * What the CLI loads at start-up: with the default config (fs storage, no auth, no replication)
 * none of the heavy modules only other configs need (the AWS SDK, the Redis client, bcrypt,
 * tldts, undici's index), so that idle memory cannot grow back unnoticed; with a config that
 * needs one, it loads during start-up, before the first request. The CLI runs in a child with a
 * module hook that writes down every ES module it loads and, at exit, every CommonJS one.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './helpers/http.js';
import { spawnTracked, terminate, type Tracked } from './helpers/processes.js';

const CLI = join(process.cwd(), 'src', 'cli.ts');

/** Modules a mirror on fs storage without auth or replication has no use for at start-up. */
const NOT_AT_START = ['/node_modules/@aws-sdk/', '/node_modules/@keyv/redis/', '/node_modules/bcryptjs/', '/node_modules/tldts', '/node_modules/undici/index.js'];

// Appends every ES module URL the process loads to $LOADED_LOG (the hooks run on a thread of their own).
const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) { appendFileSync(process.env.LOADED_LOG, url + '\\n'); return next(url, context); }
`;
// Registers the hooks, and at exit adds every CommonJS module (createRequire's loads among them).
const REGISTER = `import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
register('./hooks.mjs', import.meta.url);
const require = createRequire(import.meta.url);
process.on('exit', () => appendFileSync(process.env.LOADED_LOG, Object.keys(require.cache).join('\\n') + '\\n'));
`;

let dir: string;
const running: Tracked[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-mirror-startup-'));
  await writeFile(join(dir, 'hooks.mjs'), HOOKS);
  await writeFile(join(dir, 'register.mjs'), REGISTER);
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => terminate(p, 5_000)));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the CLI with `config` (YAML), waits until it answers /healthz, stops it, and returns every module it loaded. */
async function loadedAtStart(name: string, config: string): Promise<string[]> {
  const path = join(dir, `${name}.yaml`);
  const log = join(dir, `${name}.loaded`);
  await writeFile(path, `listen: "127.0.0.1:0"\nstorage: { type: fs, path: ${JSON.stringify(join(dir, `${name}-data`))} }\n${config}`);
  const proc = spawnTracked(process.execPath, ['--import', 'tsx', '--import', join(dir, 'register.mjs'), CLI, '--config', path], {
    env: { ...process.env, LOG_LEVEL: 'info', LOADED_LOG: log },
  });
  running.push(proc);
  let url = '';
  await waitFor(
    () => {
      if (proc.exit()) throw new Error(`the mirror exited: ${proc.output()}`);
      url = /"listen":"([^"]+)"/.exec(proc.stdout())?.[1] ?? '';
      return url !== '';
    },
    60_000,
    'the mirror to listen',
  );
  expect((await fetch(`http://${url}/healthz`, { signal: AbortSignal.timeout(10_000) })).status).toBe(200);
  const exit = await terminate(proc, 20_000);
  expect(exit, proc.output()).toEqual({ code: 0, signal: null });
  return (await readFile(log, 'utf8')).split('\n').filter(Boolean);
}

const matching = (loaded: string[], fragment: string) => loaded.filter((f) => f.includes(fragment));

describe('modules loaded at start-up', () => {
  it('leaves out what only other configs need, with the default config', async () => {
    const loaded = await loadedAtStart('default', '');
    // The record works: what every mirror needs is in it, ES modules and CommonJS alike.
    expect(matching(loaded, '/node_modules/koa/').length).toBeGreaterThan(0);
    expect(matching(loaded, '/node_modules/undici/lib/dispatcher/pool.js')).toHaveLength(1);
    for (const heavy of NOT_AT_START) expect(matching(loaded, heavy), heavy).toEqual([]);
  }, 120_000);

  it('loads bcrypt during start-up when the config names an htpasswd file, before any request needs it', async () => {
    const htpasswd = join(dir, 'htpasswd');
    await writeFile(htpasswd, `alice:${bcrypt.hashSync('wonderland', 4)}\n`);
    const loaded = await loadedAtStart('htpasswd', `auth: { htpasswd: ${JSON.stringify(htpasswd)} }\n`);
    expect(matching(loaded, '/node_modules/bcryptjs/').length).toBeGreaterThan(0);
  }, 120_000);
});
