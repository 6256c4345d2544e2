/**
 * Several upstreams behind one mirror: routing by containerd's `?ns=`, by a leading registry
 * segment and by default; per-upstream cache keys; health with failover between URLs; and
 * fallback that takes digests from any group member but tags only where the config says.
 */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRouting } from '../../src/upstream/routing.js';
import type { MirrorConfigInput } from '../../src/config.js';
import type { Upstream } from '../../src/upstream/types.js';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
// What containerd sends to a mirror: the upstream host in ns, and its manifest Accept list.
const CONTAINERD_ACCEPT =
  'application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*';

const fake = (name: string): Upstream => ({ name, url: `http://${name}`, request: () => Promise.reject(new Error('unused')), close: async () => {} });
const manifest = (label: string) => ({ schemaVersion: 2, mediaType: OCI, annotations: { from: label } });
const bodyOf = (r: { body: Buffer }) => JSON.parse(r.body.toString()) as { annotations?: { from: string }; errors?: Array<{ code: string; message: string }> };

describe('routing rules', () => {
  const hub = fake('docker.io');
  const ghcr = fake('ghcr.io');
  const internal = fake('registry.internal:5000');
  const routing = createRouting({
    upstreams: [{ upstream: hub }, { upstream: ghcr }, { upstream: internal, aliases: ['internal'], default: true }],
    fallbackGroups: [{ upstreams: ['registry.internal:5000', 'docker.io'], tags: ['library/*'] }],
  });

  it('routes by ns first, only to configured hosts', () => {
    expect(routing.resolve('org/app', 'ghcr.io')).toMatchObject({ upstream: ghcr, repository: 'org/app' });
    expect(routing.resolve('ghcr.io/org/app', 'docker.io')).toMatchObject({ upstream: hub, repository: 'ghcr.io/org/app' });
    expect(() => routing.resolve('org/app', 'evil.example')).toThrow(/not mirrored here/);
  });

  it('routes by a leading registry segment, stripped, then by default', () => {
    expect(routing.resolve('ghcr.io/org/app')).toMatchObject({ upstream: ghcr, repository: 'org/app' });
    expect(routing.resolve('internal/team/app')).toMatchObject({ upstream: internal, repository: 'team/app' });
    expect(routing.resolve('team/app')).toMatchObject({ upstream: internal, repository: 'team/app' });
    expect(routing.resolve('ghcr.io')).toMatchObject({ upstream: internal, repository: 'ghcr.io' });
  });

  it('applies Docker Hub rules: three host names, library/ for single names', () => {
    for (const host of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
      expect(routing.resolve('nginx', host)).toMatchObject({ upstream: hub, repository: 'library/nginx' });
      expect(routing.resolve(`${host}/nginx`)).toMatchObject({ upstream: hub, repository: 'library/nginx' });
    }
    expect(routing.resolve('docker.io/bitnami/redis')).toMatchObject({ repository: 'bitnami/redis' });
  });

  it('gives digest fallbacks to group members and tag fallbacks only to matching names', () => {
    const lib = routing.resolve('library/nginx');
    expect(lib.digestFallbacks?.map((t) => [t.upstream.name, t.repository])).toEqual([['docker.io', 'library/nginx']]);
    expect(lib.tagFallbacks?.map((t) => t.upstream.name)).toEqual(['docker.io']);
    const team = routing.resolve('team/app');
    expect(team.digestFallbacks?.map((t) => t.upstream.name)).toEqual(['docker.io']);
    expect(team.tagFallbacks).toBeUndefined();
    expect(routing.resolve('ghcr.io/org/app').digestFallbacks).toBeUndefined();
  });

  it('refuses repositories an upstream does not allow, and never falls back to a member that does not', () => {
    const filtered = createRouting({
      upstreams: [
        { upstream: internal, default: true, allow: ['team/**', 'library/*'], deny: ['team/secret'] },
        { upstream: hub, deny: ['library/busybox'] },
      ],
      fallbackGroups: [{ upstreams: ['registry.internal:5000', 'docker.io'], tags: ['library/*'] }],
    });
    expect(() => filtered.resolve('other/app')).toThrow(/other\/app of registry.internal:5000 is not mirrored here/);
    expect(() => filtered.resolve('team/secret')).toThrow(/not mirrored/);
    expect(() => filtered.resolve('busybox', 'docker.io')).toThrow(/library\/busybox of docker.io/);
    expect(filtered.resolve('team/a/b')).toMatchObject({ repository: 'team/a/b' });
    expect(filtered.resolve('library/nginx').tagFallbacks?.map((t) => t.upstream.name)).toEqual(['docker.io']);
    expect(filtered.resolve('library/busybox').digestFallbacks).toBeUndefined();
    expect(filtered.resolve('team/secret', undefined, { filtered: false })).toMatchObject({ repository: 'team/secret' });
  });

  it('refuses a host claimed twice and two defaults', () => {
    expect(() => createRouting({ upstreams: [{ upstream: hub }, { upstream: ghcr, aliases: ['index.docker.io'] }] })).toThrow(/claimed/);
    expect(() => createRouting({ upstreams: [{ upstream: hub, default: true }, { upstream: ghcr, default: true }] })).toThrow(/default/);
  });
});

describe('several upstreams behind one mirror', () => {
  let a: FakeUpstream;
  let b: FakeUpstream;
  let mirror: TestMirror;

  async function start(extra: Partial<MirrorConfigInput> = {}) {
    mirror = await startTestMirror(a.url, {
      upstreams: [
        { name: 'registry-a.test', url: a.url, default: true, timeouts: { connect: '1s', headers: '2s', body: '2s' } },
        { name: 'registry-b.test', url: b.url, aliases: ['b'], timeouts: { connect: '1s', headers: '2s', body: '2s' } },
      ],
      cache: { tagTtl: '100ms' },
      ...extra,
    });
  }

  beforeEach(async () => {
    a = await startFakeUpstream();
    b = await startFakeUpstream();
  });
  afterEach(async () => {
    await mirror?.dispose();
    await Promise.all([a.close(), b.close()]);
  });

  it('keeps the same name on two registries apart, in every routing form and in the cache', async () => {
    await start();
    a.addManifest('team/app', '1.0', manifest('a'));
    b.addManifest('team/app', '1.0', manifest('b'));
    const url = (path: string) => `${mirror.url}/v2/${path}`;
    expect(bodyOf(await raw(url('team/app/manifests/1.0'))).annotations?.from).toBe('a');
    expect(bodyOf(await raw(url('registry-b.test/team/app/manifests/1.0'))).annotations?.from).toBe('b');
    expect(bodyOf(await raw(url('b/team/app/manifests/1.0'))).annotations?.from).toBe('b');
    const viaNs = await raw(url('team/app/manifests/1.0?ns=registry-b.test'), { headers: { Accept: CONTAINERD_ACCEPT } });
    expect(bodyOf(viaNs).annotations?.from).toBe('b');
    expect(b.requests.every((r) => r.path.startsWith('/v2/team/app/'))).toBe(true);

    // Both upstreams gone, tags expired: each name still serves its own registry's copy.
    await new Promise((r) => setTimeout(r, 150));
    await Promise.all([a.close(), b.close()]);
    const staleA = await raw(url('team/app/manifests/1.0'));
    const staleB = await raw(url('team/app/manifests/1.0?ns=registry-b.test'));
    expect(staleA.headers['x-mirror-cache']).toBe('STALE');
    expect(bodyOf(staleA).annotations?.from).toBe('a');
    expect(bodyOf(staleB).annotations?.from).toBe('b');
  });

  it('serves blobs with ns as containerd asks for them', async () => {
    await start();
    const d = b.addBlob(Buffer.from('only on b'));
    const res = await raw(`${mirror.url}/v2/team/app/blobs/${d}?ns=registry-b.test`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('only on b');
  });

  it('refuses an ns it does not mirror without contacting anyone', async () => {
    await start();
    const res = await raw(`${mirror.url}/v2/team/app/manifests/1.0?ns=evil.example`);
    expect(res.status).toBe(404);
    expect(bodyOf(res).errors?.[0]?.code).toBe('NAME_UNKNOWN');
    expect(bodyOf(res).errors?.[0]?.message).toContain('evil.example');
    expect(a.requests.length + b.requests.length).toBe(0);
  });

  it('takes a digest from the next group member, but never a tag', async () => {
    await start({ fallbackGroups: [{ upstreams: ['registry-a.test', 'registry-b.test'] }] });
    const blob = b.addBlob(Buffer.from('fallback bytes'));
    const d = b.addManifest('team/app', 'only-on-b', manifest('b'));
    const gotBlob = await raw(`${mirror.url}/v2/team/app/blobs/${blob}`);
    expect(gotBlob.status).toBe(200);
    expect(gotBlob.body.toString()).toBe('fallback bytes');
    const byDigest = await raw(`${mirror.url}/v2/team/app/manifests/${d}`);
    expect(byDigest.status).toBe(200);
    expect(bodyOf(byDigest).annotations?.from).toBe('b');
    const byTag = await raw(`${mirror.url}/v2/team/app/manifests/only-on-b`);
    expect(byTag.status).toBe(404);
    expect(b.requests.some((r) => r.path.includes('/manifests/only-on-b'))).toBe(false);
  });

  it('takes a tag from the next member only for names the config allows', async () => {
    await start({ fallbackGroups: [{ upstreams: ['registry-a.test', 'registry-b.test'], tags: ['team/*'] }] });
    b.addManifest('team/app', 'only-on-b', manifest('b'));
    b.addManifest('other/app', 'only-on-b', manifest('b'));
    expect((await raw(`${mirror.url}/v2/team/app/manifests/only-on-b`)).status).toBe(200);
    expect((await raw(`${mirror.url}/v2/other/app/manifests/only-on-b`)).status).toBe(404);
  });
});

describe('health and failover', () => {
  let good: FakeUpstream;
  let other: FakeUpstream;
  let hanging: Server;
  let hangingUrl: string;
  let connections = 0;
  const sockets = new Set<Socket>();
  let mirror: TestMirror;

  beforeEach(async () => {
    good = await startFakeUpstream();
    other = await startFakeUpstream();
    connections = 0;
    // Accepts and never answers: the worst kind of dead upstream.
    hanging = createServer((s) => {
      connections++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }).listen(0, '127.0.0.1');
    await once(hanging, 'listening');
    hangingUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    vi.useRealTimers();
    await mirror?.dispose();
    for (const s of sockets) s.destroy();
    await new Promise((r) => hanging.close(r));
    await Promise.all([good.close(), other.close()]);
  });

  it('costs one headers timeout, then goes straight to the next URL until the probe', async () => {
    // The URL's time out runs on a clock of the test's own (only Date is faked, before the
    // mirror takes its clock; the headers timeout stays real): on real time, a loaded machine
    // could spend the whole time out on the three requests and probe before the test meant to.
    vi.useFakeTimers({ toFake: ['Date'] });
    mirror = await startTestMirror(good.url, {
      upstreams: [
        {
          name: 'registry.test',
          urls: [hangingUrl, good.url],
          // Long enough that three quick requests and one timeout paid stay apart under load.
          timeouts: { connect: '1s', headers: '2s', body: '2s' },
          health: { maxFails: 1, failTimeout: '1500ms' },
        },
      ],
    });
    const blobs = Array.from({ length: 5 }, (_, i) => good.addBlob(Buffer.from(`blob ${i}`)));
    const t0 = performance.now();
    const first = await raw(`${mirror.url}/v2/team/app/blobs/${blobs[0]}`);
    expect(first.status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1_900);
    const t1 = performance.now();
    for (const d of blobs.slice(1, 4)) expect((await raw(`${mirror.url}/v2/team/app/blobs/${d}`)).status).toBe(200);
    expect(performance.now() - t1).toBeLessThan(2_000); // three requests, not one timeout paid
    expect(connections).toBe(1);
    vi.advanceTimersByTime(1600);
    await raw(`${mirror.url}/v2/team/app/blobs/${blobs[4]}`);
    expect(connections).toBe(2); // probed back in once
  });

  it('fails fast for a dead upstream and never stalls another one', async () => {
    mirror = await startTestMirror(good.url, {
      upstreams: [
        // A headers timeout long enough that a quick answer and one held behind it stay apart under load.
        { name: 'dead.test', url: hangingUrl, default: true, timeouts: { connect: '1s', headers: '3s', body: '2s' }, health: { failTimeout: '30s' } },
        { name: 'alive.test', url: other.url },
      ],
    });
    const d = other.addBlob(Buffer.from('alive'));
    let slowSettled = false;
    const slow = raw(`${mirror.url}/v2/team/app/manifests/1.0`).finally(() => (slowSettled = true));
    const t0 = performance.now();
    const fast = await raw(`${mirror.url}/v2/alive.test/team/app/blobs/${d}`);
    expect(fast.status).toBe(200);
    expect(slowSettled, 'the dead upstream has not answered yet').toBe(false);
    expect(performance.now() - t0).toBeLessThan(2_000); // not held behind the dead upstream's 3 s
    expect((await slow).status).toBe(503);
    const t1 = performance.now();
    const again = await raw(`${mirror.url}/v2/team/app/manifests/2.0`);
    expect(again.status).toBe(503);
    expect(bodyOf(again).errors?.[0]?.message).toContain('out of rotation');
    expect(performance.now() - t1).toBeLessThan(2_000); // no second 3 s timeout paid
    expect(connections).toBe(1);
  });

  it('serves again within seconds of a single-URL upstream’s return, not after failTimeout', async () => {
    // A port that refuses while the upstream is "down" and forwards to it once it is back.
    const port = (hanging.address() as AddressInfo).port;
    await new Promise((r) => hanging.close(r));
    const gate = createServer((s) => {
      const to = connect(Number(new URL(good.url).port), '127.0.0.1');
      s.pipe(to).pipe(s);
      to.on('error', () => s.destroy());
      s.on('error', () => to.destroy());
    });
    hanging = gate; // closed by afterEach
    mirror = await startTestMirror(good.url, {
      upstreams: [{ name: 'registry.test', url: `http://127.0.0.1:${port}`, timeouts: { connect: '1s', headers: '2s', body: '2s' }, health: { failTimeout: '30s' } }],
    });
    const d = good.addBlob(Buffer.from('back again'));
    expect((await raw(`${mirror.url}/v2/team/app/blobs/${d}`)).status).toBe(503); // refused: out of rotation for 30 s
    gate.listen(port, '127.0.0.1');
    await once(gate, 'listening');
    const back = Date.now();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await raw(`${mirror.url}/v2/team/app/blobs/${d}`)).status;
    }
    expect(status).toBe(200);
    expect(Date.now() - back).toBeLessThan(15_000); // about 1 s; the old rule took 30 s
  });

  it('counts connection refused as a failure too', async () => {
    const closed = await startFakeUpstream();
    const refusedUrl = closed.url;
    await closed.close();
    mirror = await startTestMirror(good.url, {
      upstreams: [{ name: 'registry.test', urls: [refusedUrl, good.url], health: { failTimeout: '30s' } }],
    });
    const d = good.addBlob(Buffer.from('x'));
    expect((await raw(`${mirror.url}/v2/team/app/blobs/${d}`)).status).toBe(200);
    const health = (mirror.mirror.upstreams[0] as unknown as { health(): Array<{ state: string }> }).health();
    expect(health.map((h) => h.state)).toEqual(['down', 'up']);
  });
});
