/**
 * Docker Hub's rate limit, played by a real docker-registry behind a small node HTTP front
 * (test/helpers/counting-proxy.ts): the front adds Hub's `ratelimit-limit` / `ratelimit-remaining`
 * headers to manifest answers and, when told, answers 429 with `Retry-After` itself. A node front
 * rather than nginx: the test flips it to 429 and back between two requests, and counts exactly
 * which requests reached it, without reloading a config or parsing an access log.
 *
 * skopeo pulls through the mirror; then the front starts refusing, and the mirror must serve the
 * cached tag stale and fail cold requests fast, with no request reaching the front until the
 * back-off is over. Two upstreams, so that one's back-off is seen not to touch the other. Then
 * the same of a registry behind the token handshake whose token server (behind a front of its
 * own) answers 429: the same back-off, and neither server asked until it is over.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging/index.js';
import { startCountingProxy, type CountingProxy, type FrontBehaviour } from '../helpers/counting-proxy.js';
import { raw, waitFor } from '../helpers/http.js';
import { pushTinyImage, type Fixture } from '../helpers/images.js';
import { parseMetrics, total } from '../helpers/metrics.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' };
const TOO_MANY = JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }] });

/** The front as Docker Hub: a limit of 100 a window, one fewer left after each manifest GET. */
function dockerHub(): FrontBehaviour & { remaining: number } {
  const hub = {
    remaining: 100,
    headers(req: { method: string; path: string }): Record<string, string> {
      if (!req.path.includes('/manifests/')) return {};
      if (req.method === 'GET') hub.remaining--;
      return { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': `${hub.remaining};w=21600` };
    },
  };
  return hub;
}

/** Docker Hub once the limit is reached: every request answered 429, none relayed. */
const refusing = (retryAfter: number): FrontBehaviour => ({
  answer: () => ({
    status: 429,
    headers: { 'content-type': 'application/json', 'retry-after': String(retryAfter), 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' },
    body: TOO_MANY,
  }),
});

/** The mirror's /metrics, parsed. */
const metricsOf = async (m: TestMirror) => parseMetrics((await raw(`${m.url}/metrics`)).body.toString());

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('an upstream that rate limits', () => {
  let registry: RunningRegistry | undefined;
  let hubFront: CountingProxy | undefined;
  let otherFront: CountingProxy | undefined;
  let mirror: TestMirror | undefined;
  let app: Fixture;
  let cold: Fixture;
  let late: Fixture;
  let work: string;
  const hub = dockerHub();
  const logLines: string[] = [];

  const scrape = () => metricsOf(mirror!);
  const gauge = (samples: ReturnType<typeof parseMetrics>, name: string, upstream: string) =>
    samples.find((s) => s.name === name && s.labels.upstream === upstream)?.value;
  const blobUrl = (name: string, digest: string) => `${mirror!.url}/v2/${name}/blobs/${digest}`;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-ratelimit-'));
    registry = await startRegistry();
    app = await pushTinyImage(registry, { name: 'team/app', tag: 'v1' });
    cold = await pushTinyImage(registry, { name: 'team/cold', tag: 'v1' });
    late = await pushTinyImage(registry, { name: 'team/late', tag: 'v1' });
    [hubFront, otherFront] = await Promise.all([startCountingProxy(registry.url), startCountingProxy(registry.url)]);
    hubFront.behave(hub);
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    mirror = await startTestMirror(
      hubFront.url,
      {
        upstreams: [
          { name: 'hub.test', url: hubFront.url, default: true },
          { name: 'other.test', url: otherFront.url },
        ],
        // Every tag request asks the upstream: the back-off, not the tag's TTL, keeps requests away.
        cache: { tagTtl: '0s' },
      },
      { logger: createLogger({ level: 'warn', destination: stream }) },
    );
  });

  afterAll(async () => {
    await Promise.allSettled([mirror?.dispose(), hubFront?.close(), otherFront?.close()]);
    await registry?.destroy();
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('pulls through and shows the limits the upstream sent as gauges', async () => {
    await skopeoCopy(`${mirror!.host}/team/app:v1`, join(work, 'first'));
    await verifyDirPull(join(work, 'first'), app);
    expect(hub.remaining).toBeLessThan(100);

    const samples = await scrape();
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_limit', 'hub.test')).toBe(100);
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_remaining', 'hub.test')).toBe(hub.remaining);
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_window_seconds', 'hub.test')).toBe(21600);
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_backoff_seconds', 'hub.test')).toBe(0);
    // An upstream that never sent the headers has no figures, only its (zero) back-off.
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_limit', 'other.test')).toBeUndefined();
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_backoff_seconds', 'other.test')).toBe(0);

    const status = JSON.parse((await raw(`${mirror!.url}/_mirror/status.json`)).body.toString()) as {
      upstreams: Array<{ name: string; rateLimit?: unknown }>;
    };
    expect(status.upstreams.find((u) => u.name === 'hub.test')?.rateLimit).toEqual({ limit: 100, remaining: hub.remaining, window: 21600, backoffSeconds: 0 });
    expect(status.upstreams.find((u) => u.name === 'other.test')).not.toHaveProperty('rateLimit');
  });

  it('after a 429, serves the tag stale and fails cold requests fast, sending the upstream nothing', async () => {
    hubFront!.behave(refusing(30));
    hubFront!.reset();
    // The tag's revalidation meets the 429 itself: stale, and the back-off starts.
    const first = await raw(`${mirror!.url}/v2/team/app/manifests/v1`, { headers: ACCEPT });
    expect(first.status).toBe(200);
    expect(first.headers['x-mirror-cache']).toBe('STALE');
    expect(hubFront!.count('*')).toBe(1);

    hubFront!.reset();
    const stale = await raw(`${mirror!.url}/v2/team/app/manifests/v1`, { headers: ACCEPT });
    expect(stale.status).toBe(200);
    expect(stale.headers['docker-content-digest']).toBe(app.digest);
    expect(stale.headers.warning).toBe('110 - "Response is Stale"');
    // A real client pulls the cached image meanwhile.
    await skopeoCopy(`${mirror!.host}/team/app:v1`, join(work, 'during'));
    await verifyDirPull(join(work, 'during'), app);

    for (const url of [blobUrl('team/cold', cold.blobs[0]!.digest), `${mirror!.url}/v2/team/cold/manifests/v1`]) {
      const refused = await raw(url, { headers: ACCEPT });
      expect(refused.status).toBe(429);
      const body = JSON.parse(refused.body.toString()) as { errors: Array<{ code: string; message: string }> };
      expect(body.errors[0]!.code).toBe('TOOMANYREQUESTS');
      expect(body.errors[0]!.message).toMatch(/retry in \d+s/);
      const wait = Number(refused.headers['retry-after']);
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(30);
    }
    expect(hubFront!.requests).toEqual([]);

    // The other upstream is not held off.
    const elsewhere = await raw(blobUrl('other.test/team/cold', cold.blobs[0]!.digest));
    expect(elsewhere.status).toBe(200);
    expect(otherFront!.count('GET', '/blobs/')).toBeGreaterThan(0);

    const samples = await scrape();
    const backoff = gauge(samples, 'oci_mirror_upstream_ratelimit_backoff_seconds', 'hub.test')!;
    expect(backoff).toBeGreaterThan(0);
    expect(backoff).toBeLessThanOrEqual(30);
    expect(gauge(samples, 'oci_mirror_upstream_ratelimit_remaining', 'hub.test')).toBe(0);
    expect(total(samples, 'oci_mirror_upstream_ratelimit_backoffs_total', { upstream: 'hub.test' })).toBe(1);
    // Requests held off were never sent: they are not upstream requests, nor upstream errors.
    expect(total(samples, 'oci_mirror_upstream_requests_total', { upstream: 'hub.test', status: 'error' })).toBe(0);
    expect(total(samples, 'oci_mirror_upstream_requests_total', { upstream: 'hub.test', status: '429' })).toBe(1);

    const warnings = logLines.map((l) => JSON.parse(l) as { msg: string; upstream?: string; seconds?: number }).filter((l) => l.upstream === 'hub.test' && l.seconds !== undefined);
    expect(warnings).toEqual([expect.objectContaining({ upstream: 'hub.test', seconds: 30, source: 'retry-after', msg: expect.stringContaining('rate limiting') })]);
  });

  it('sends requests to the upstream again once the back-off is over', async () => {
    const digest = late.blobs[0]!.digest;
    otherFront!.behave(refusing(5));
    otherFront!.reset();
    const url = blobUrl('other.test/team/late', digest);
    const passedOn = await raw(url);
    expect(passedOn.status).toBe(429);
    expect(passedOn.headers['retry-after']).toBe('5');
    const held = await raw(url);
    expect(held.status).toBe(429);
    expect(otherFront!.count('*')).toBe(1);

    otherFront!.behave({});
    // Read off the gauge, which asks nothing of the upstream; generous against a busy machine.
    await waitFor(async () => gauge(await scrape(), 'oci_mirror_upstream_ratelimit_backoff_seconds', 'other.test') === 0, 15_000, 'the back-off to end');
    const served = await raw(url);
    expect(served.status).toBe(200);
    expect(served.body.length).toBe(late.blobs[0]!.size);
    expect(otherFront!.count('GET', '/blobs/')).toBe(2);
  });
});

describe.skipIf(!requireTools(['docker-registry', 'openssl']))('an upstream whose token server rate limits', () => {
  let tokens: TokenServer | undefined;
  let tokenFront: CountingProxy | undefined;
  let registryFront: CountingProxy | undefined;
  let registry: RunningRegistry | undefined;
  let mirror: TestMirror | undefined;
  let app: Fixture;
  let other: Fixture;

  const scrape = () => metricsOf(mirror!);
  const backoffSeconds = async () => total(await scrape(), 'oci_mirror_upstream_ratelimit_backoff_seconds', { upstream: 'auth.test' });

  beforeAll(async () => {
    tokens = await startTokenServer({ users: { admin: 'admin-pw' }, grants: [{ repository: 'team/*', users: ['admin'], anonymous: true, actions: ['pull', 'push'] }] });
    tokenFront = await startCountingProxy(tokens.url);
    // The registry sends clients to the front: every token request the mirror makes passes it.
    registry = await startRegistry({ auth: tokens.registryAuth(`${tokenFront.url}/token`) });
    const admin = { username: 'admin', password: 'admin-pw' };
    const push = async (name: string) => ({
      url: registry!.url,
      headers: { Authorization: `Bearer ${await tokens!.fetchToken(`repository:${name}:pull,push`, admin)}` },
    });
    app = await pushTinyImage(await push('team/app'), { name: 'team/app', tag: 'v1' });
    other = await pushTinyImage(await push('team/other'), { name: 'team/other', tag: 'v1' });
    registryFront = await startCountingProxy(registry.url);
    mirror = await startTestMirror(registryFront.url, { upstreams: [{ name: 'auth.test', url: registryFront.url, default: true }] });
  });

  afterAll(async () => {
    await Promise.allSettled([mirror?.dispose(), tokenFront?.close(), registryFront?.close()]);
    await registry?.destroy();
    await tokens?.close();
    await terminateAll();
  });

  it("holds the upstream off after the token server's 429: 429 with Retry-After to clients, no request to either server until it is over", async () => {
    tokenFront!.behave(refusing(5));
    const manifest = `${mirror!.url}/v2/team/app/manifests/v1`;
    const refused = await raw(manifest, { headers: ACCEPT });
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body.toString()).errors[0].code).toBe('TOOMANYREQUESTS');
    expect(refused.headers['retry-after']).toBe('5');
    // The registry's challenge, then the one token request that was refused.
    expect(registryFront!.count('*')).toBe(1);
    expect(tokenFront!.count('GET', '/token')).toBe(1);

    // Another repository (a scope with no token yet), a blob, the same through ?ns=, a tag list,
    // and HEADs: held off, nothing sent anywhere.
    registryFront!.reset();
    tokenFront!.reset();
    const otherBlob = `${mirror!.url}/v2/team/other/blobs/${other.blobs[0]!.digest}`;
    for (const [url, method] of [
      [otherBlob, 'GET'],
      [`${otherBlob}?ns=auth.test`, 'GET'],
      [manifest, 'GET'],
      [`${mirror!.url}/v2/team/other/tags/list`, 'GET'],
      [manifest, 'HEAD'],
      [otherBlob, 'HEAD'],
    ] as const) {
      const held = await raw(url, { headers: ACCEPT, method });
      expect(held.status, `${method} ${url}`).toBe(429);
      if (method === 'GET') expect(JSON.parse(held.body.toString()).errors[0].message).toMatch(/retry in \d+s/);
      const wait = Number(held.headers['retry-after']);
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(5);
    }
    expect(registryFront!.requests).toEqual([]);
    expect(tokenFront!.requests).toEqual([]);
    expect(total(await scrape(), 'oci_mirror_upstream_ratelimit_backoffs_total', { upstream: 'auth.test' })).toBe(1);

    tokenFront!.behave({});
    // Read off the gauge, which asks nothing of the upstream; generous against a busy machine.
    await waitFor(async () => (await backoffSeconds()) === 0, 15_000, 'the back-off to end');
    const served = await raw(manifest, { headers: ACCEPT });
    expect(served.status).toBe(200);
    expect(served.headers['docker-content-digest']).toBe(app.digest);
    expect(tokenFront!.count('GET', '/token')).toBe(1);
  });
});
