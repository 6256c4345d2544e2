/**
 * Secret files rotated while the mirror runs, the ways they are in production, with no restart
 * of the mirror:
 * - an upstream's passwordFile in a Kubernetes Secret volume (the `..data` link swapped to a new
 *   directory), against Debian's docker-registry behind htpasswd whose password changed;
 * - an upstream's passwordFile rewritten in place (vault-agent), against docker-registry behind
 *   a token server: the next exchange uses the new password, and no token the old one earned
 *   is handed out again;
 * - the mirror's own auth.htpasswd, a client tokenFile and the admin tokenFile: the old
 *   credentials stop working, the new ones work, and a file that disappears keeps the last
 *   good content with one warning.
 */
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHECK_EVERY_MS } from '../../src/secret-file.js';
import { raw } from '../helpers/http.js';
import { pushMultiLayerImage, pushOciIndex, pushTinyImage, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const hash = (p: string) => bcrypt.hashSync(p, 5);
/** Long enough for the next use to be a check of every secret file, with room for a busy machine. */
const pastNextCheck = () => new Promise((resolve) => setTimeout(resolve, 2 * CHECK_EVERY_MS + 500));
const UPSTREAM_TIMEOUTS = { connect: '2s', headers: '5s', body: '5s' };

/** A Kubernetes Secret volume as kubelet writes it: `<key>` → `..data/<key>`, `..data` → a directory per version. */
async function secretVolume(dir: string, key: string, value: string): Promise<{ path: string; rotate(value: string): Promise<void> }> {
  let version = 0;
  const write = async (v: string) => {
    const current = `..v${++version}`;
    await mkdir(join(dir, current));
    await writeFile(join(dir, current, key), v);
    await symlink(current, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    if (version > 1) await rm(join(dir, `..v${version - 1}`), { recursive: true });
  };
  await mkdir(dir, { recursive: true });
  await write(value);
  await symlink(join('..data', key), join(dir, key));
  return { path: join(dir, key), rotate: write };
}

describe.skipIf(!requireTools(['docker-registry', 'skopeo', 'openssl'], 'apt-get install docker-registry skopeo openssl'))(
  'secret files rotated while the mirror runs',
  () => {
    const mirrors: TestMirror[] = [];
    const registries: RunningRegistry[] = [];
    let tokens: TokenServer | undefined;
    let work: string;
    let pulls = 0;

    const pull = async (mirror: TestMirror, ref: string, fixture: Fixture) => {
      const dir = join(work, `pull-${++pulls}`);
      await skopeoCopy(`${mirror.host}/${ref}`, dir, { all: true, timeoutMs: 20_000 });
      await verifyDirPull(dir, fixture);
    };

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'oci-e2e-rotate-'));
    });

    afterAll(async () => {
      await Promise.allSettled([...mirrors.map((m) => m.dispose()), ...registries.map((r) => r.destroy()), tokens?.close()]);
      await terminateAll();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('uses an upstream passwordFile swapped in a Kubernetes Secret volume for the next pull (htpasswd upstream)', async () => {
      const htpasswd = join(work, 'upstream-htpasswd');
      await writeFile(htpasswd, `robot:${hash('robot-pw-1')}\n`);
      const registry = await startRegistry({ auth: { htpasswd: { realm: 'private', path: htpasswd } } });
      registries.push(registry);
      const target = { url: registry.url, headers: { Authorization: basic('robot', 'robot-pw-1') } };
      const first = await pushTinyImage(target, { name: 'team/first', tag: 'v1' });
      const second = await pushMultiLayerImage(target, { name: 'team/second', tag: 'v1' });
      const volume = await secretVolume(join(work, 'volume'), 'password', 'robot-pw-1');
      const mirror = await startTestMirror(registry.url, {
        upstreams: [{ name: 'private.test', url: registry.url, username: 'robot', passwordFile: volume.path, timeouts: UPSTREAM_TIMEOUTS }],
      });
      mirrors.push(mirror);
      await pull(mirror, `private.test/${first.ref}`, first);

      // The upstream's password changes (a restart, so it is certain the old one is gone), then the Secret.
      await writeFile(htpasswd, `robot:${hash('robot-pw-2')}\n`);
      await registry.restart();
      expect((await raw(`${registry.url}/v2/`, { headers: { Authorization: basic('robot', 'robot-pw-1') } })).status).toBe(401);
      await volume.rotate('robot-pw-2');
      await pastNextCheck();

      await pull(mirror, `private.test/${second.ref}`, second);
    });

    it('exchanges the rewritten upstream password for new tokens, never reusing one the old password earned (token upstream)', async () => {
      const users: Record<string, string> = { admin: 'admin-pw', robot: 'robot-pw-1' };
      tokens = await startTokenServer({
        users,
        grants: [
          { repository: 'team/*', users: ['admin'], actions: ['pull', 'push'] },
          { repository: 'team/*', users: ['robot'], actions: ['pull'] },
        ],
      });
      const registry = await startRegistry({ auth: tokens.registryAuth() });
      registries.push(registry);
      const push = async (name: string) => ({
        url: registry.url,
        headers: { Authorization: `Bearer ${await tokens!.fetchToken(`repository:${name}:pull,push`, { username: 'admin', password: 'admin-pw' })}` },
      });
      const first = await pushTinyImage(await push('team/app'), { name: 'team/app', tag: 'v1' });
      const again = await pushMultiLayerImage(await push('team/app'), { name: 'team/app', tag: 'v2' });
      const other = await pushOciIndex(await push('team/other'), { name: 'team/other', tag: 'v1' });
      const passwordFile = join(work, 'robot-password');
      await writeFile(passwordFile, 'robot-pw-1\n');
      const mirror = await startTestMirror(registry.url, {
        upstreams: [{ name: 'private.test', url: registry.url, username: 'robot', passwordFile, timeouts: UPSTREAM_TIMEOUTS }],
      });
      mirrors.push(mirror);
      await pull(mirror, `private.test/${first.ref}`, first);

      users.robot = 'robot-pw-2';
      // In place, as vault-agent and certbot write.
      await writeFile(passwordFile, 'robot-pw-2\n');
      await pastNextCheck();
      const mark = tokens.requests.length;
      // The same repository: the token the old password earned is still valid upstream, and must not be used.
      await pull(mirror, `private.test/${again.ref}`, again);
      await pull(mirror, `private.test/${other.ref}`, other);
      const exchanges = tokens.since(mark).filter((r) => r.headers['user-agent'] === 'koa-oci-mirror');
      expect(exchanges.map((r) => ({ scopes: r.scopes, authorization: r.authorization, status: r.status }))).toEqual([
        { scopes: ['repository:team/app:pull'], authorization: basic('robot', 'robot-pw-2'), status: 200 },
        { scopes: ['repository:team/other:pull'], authorization: basic('robot', 'robot-pw-2'), status: 200 },
      ]);
    });

    it('takes a rotated auth.htpasswd, client tokenFile and admin tokenFile on the next request, and keeps the last good one when a file goes', async () => {
      const dir = join(work, 'mirror-secrets');
      await mkdir(dir);
      const htpasswd = join(dir, 'htpasswd');
      const ciToken = join(dir, 'ci-token');
      const adminToken = join(dir, 'admin-token');
      await writeFile(htpasswd, `alice:${hash('alice-old')}\n`);
      await writeFile(ciToken, 'ci-token-old-0123456789\n');
      await writeFile(adminToken, 'admin-token-old-0123456789\n');
      const lines: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
      const registry = await startRegistry();
      registries.push(registry);
      const mirror = await startTestMirror(
        registry.url,
        { auth: { htpasswd, tokens: [{ name: 'ci', tokenFile: ciToken }] }, admin: { enabled: true, tokenFile: adminToken } },
        { logger },
      );
      mirrors.push(mirror);
      const status = async (path: string, authorization: string) => (await raw(`${mirror.url}${path}`, { headers: { Authorization: authorization } })).status;
      const statuses = async () => ({
        aliceOld: await status('/v2/', basic('alice', 'alice-old')),
        aliceNew: await status('/v2/', basic('alice', 'alice-new')),
        ciOld: await status('/v2/', 'Bearer ci-token-old-0123456789'),
        ciNew: await status('/v2/', 'Bearer ci-token-new-0123456789'),
        adminOld: await status('/_mirror/admin/images', 'Bearer admin-token-old-0123456789'),
        adminNew: await status('/_mirror/admin/images', 'Bearer admin-token-new-0123456789'),
      });
      expect(await statuses()).toEqual({ aliceOld: 200, aliceNew: 401, ciOld: 200, ciNew: 401, adminOld: 200, adminNew: 401 });

      await writeFile(htpasswd, `alice:${hash('alice-new')}\n`);
      await writeFile(ciToken, 'ci-token-new-0123456789\n');
      await writeFile(`${adminToken}.tmp`, 'admin-token-new-0123456789\n');
      await rename(`${adminToken}.tmp`, adminToken);
      await pastNextCheck();
      expect(await statuses()).toEqual({ aliceOld: 401, aliceNew: 200, ciOld: 401, ciNew: 200, adminOld: 401, adminNew: 200 });

      await unlink(htpasswd);
      await pastNextCheck();
      expect(await status('/v2/', basic('alice', 'alice-new'))).toBe(200);
      expect(await status('/v2/', basic('alice', 'alice-new'))).toBe(200);
      const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.key === 'auth.htpasswd' && l.level === 40);
      expect(warnings).toMatchObject([{ file: htpasswd, error: 'ENOENT' }]);
      expect(lines.join('\n')).not.toMatch(/alice-new|alice-old|token-new|token-old/);
    });
  },
);
