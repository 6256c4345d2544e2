/**
 * The mirror behind a real forward proxy (tinyproxy): with HTTP_PROXY (or http_proxy) in the
 * environment every upstream connection, the token exchange's included, is a CONNECT tunnel
 * through it, so the mirror's credentials ride inside the tunnel and the proxy never forwards
 * a request of its own; NO_PROXY exempts a host; an upstream's own `proxy` applies without the
 * environment, and `proxy: none` ignores it. The proxy's log says which connections it carried.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorConfigInput } from '../../src/config.js';
import { pushTinyImage, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startTinyproxy, TINYPROXY_HINT, type Tinyproxy } from '../helpers/tinyproxy.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const PROXY_VARIABLES = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];
type UpstreamInput = NonNullable<MirrorConfigInput['upstreams']>[number];

describe.skipIf(!requireTools(['docker-registry', 'skopeo', 'openssl', 'tinyproxy'], `apt-get install docker-registry skopeo openssl tinyproxy (${TINYPROXY_HINT})`))(
  'upstreams through a forward proxy',
  () => {
    let proxy: Tinyproxy | undefined;
    let tokens: TokenServer | undefined;
    let registry: RunningRegistry | undefined;
    const mirrors: TestMirror[] = [];
    let image: Fixture;
    let work: string;
    let passwordFile: string;
    let pulls = 0;
    const saved = Object.fromEntries(PROXY_VARIABLES.map((k) => [k, process.env[k]]));

    /** Sets exactly these proxy variables (the others unset) for what follows. */
    const proxyEnvironment = (vars: Record<string, string>) => {
      for (const k of PROXY_VARIABLES) delete process.env[k];
      Object.assign(process.env, vars);
    };
    const mirrorWith = async (upstream: Partial<UpstreamInput> = {}) => {
      const mirror = await startTestMirror(registry!.url, {
        upstreams: [{ name: 'registry.test', url: registry!.url, username: 'robot', passwordFile, timeouts: { connect: '2s', headers: '5s', body: '5s' }, ...upstream }],
      });
      mirrors.push(mirror);
      return mirror;
    };
    /** Pulls the image through `mirror`; returns what the proxy carried meanwhile. */
    const pullThrough = async (mirror: TestMirror) => {
      const before = (await proxy!.requests()).length;
      const dir = join(work, `pull-${++pulls}`);
      await skopeoCopy(`${mirror.host}/${image.ref}`, dir, { timeoutMs: 20_000 });
      await verifyDirPull(dir, image);
      // tinyproxy logs a tunnel as it opens it; a short wait covers a write still under way.
      await new Promise((r) => setTimeout(r, 200));
      return (await proxy!.requests()).slice(before);
    };

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'oci-e2e-proxy-'));
      passwordFile = join(work, 'robot-password');
      await writeFile(passwordFile, 'robot-pw\n');
      proxy = await startTinyproxy();
      tokens = await startTokenServer({
        users: { admin: 'admin-pw', robot: 'robot-pw' },
        grants: [{ repository: 'team/app', users: ['admin'], actions: ['pull', 'push'] }, { repository: 'team/app', users: ['robot'], actions: ['pull'] }],
      });
      registry = await startRegistry({ auth: tokens.registryAuth() });
      const token = await tokens.fetchToken('repository:team/app:pull,push', { username: 'admin', password: 'admin-pw' });
      image = await pushTinyImage({ url: registry.url, headers: { Authorization: `Bearer ${token}` } }, { name: 'team/app', tag: 'v1' });
    });

    afterAll(async () => {
      proxyEnvironment({});
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
      await Promise.allSettled([...mirrors.map((m) => m.dispose()), registry?.destroy(), tokens?.close(), proxy?.stop()]);
      await terminateAll();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('HTTP_PROXY: the registry and its token server are reached through CONNECT tunnels, credentials inside', async () => {
      proxyEnvironment({ HTTP_PROXY: proxy!.url });
      const mirror = await mirrorWith();
      const tokenMark = tokens!.requests.length;
      const carried = await pullThrough(mirror);
      expect(carried).toContainEqual({ method: 'CONNECT', target: registry!.host });
      expect(carried).toContainEqual({ method: 'CONNECT', target: `127.0.0.1:${tokens!.port}` });
      // Only tunnels: no request the proxy read and forwarded itself, headers and all.
      expect(carried.filter((r) => r.method !== 'CONNECT')).toEqual([]);
      // The configured account reached the token server, through the tunnel.
      expect(tokens!.since(tokenMark).map((r) => r.user)).toContain('robot');
    });

    it('no_proxy (lower case, as http_proxy) exempts a host: nothing goes through the proxy', async () => {
      proxyEnvironment({ http_proxy: proxy!.url, no_proxy: 'localhost,127.0.0.1' });
      const mirror = await mirrorWith();
      expect(await pullThrough(mirror)).toEqual([]);
    });

    it('an upstream’s own proxy applies without the environment', async () => {
      proxyEnvironment({});
      const mirror = await mirrorWith({ proxy: proxy!.url });
      const carried = await pullThrough(mirror);
      expect(carried).toContainEqual({ method: 'CONNECT', target: registry!.host });
      expect(carried).toContainEqual({ method: 'CONNECT', target: `127.0.0.1:${tokens!.port}` });
    });

    it('proxy: none connects directly whatever the environment says', async () => {
      // A proxy nobody listens on: any attempt to use it would fail the pull.
      proxyEnvironment({ HTTP_PROXY: 'http://127.0.0.1:9', HTTPS_PROXY: 'http://127.0.0.1:9' });
      const mirror = await mirrorWith({ proxy: 'none' });
      expect(await pullThrough(mirror)).toEqual([]);
    });
  },
);
