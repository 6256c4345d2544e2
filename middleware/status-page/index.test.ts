/** The status page over HTTP, without a browser: routes, headers, the config switch, and status.json against /metrics. */
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import type { StatusSnapshot } from '../../src/status/index.js';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';
import { parseMetrics } from '../../test/helpers/metrics.js';
import { figuresFromMetrics, HIDDEN, metricsText, pullScenario, SECRET, settledSnapshot, type Scenario } from '../../test/status/scenario.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const done of cleanup.splice(0).reverse()) await done();
});

async function mirror(config: Parameters<typeof startTestMirror>[1] = {}): Promise<TestMirror> {
  const upstream: FakeUpstream = await startFakeUpstream();
  cleanup.push(() => upstream.close());
  const m = await startTestMirror(upstream.url, config);
  cleanup.push(() => m.dispose());
  return m;
}

describe('status page routes', () => {
  it('serves the page under a strict CSP, its assets, and status.json uncached; HEAD works; unknown assets are a plain 404', async () => {
    const m = await mirror();
    const page = await raw(`${m.url}/_mirror/`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    const html = page.body.toString();
    // Every script is a file of its own: no inline code for the CSP to have to allow.
    expect(html.match(/<script\b[^>]*>/g)?.every((tag) => / src="assets\/[\w.]+\.js"/.test(tag))).toBe(true);
    expect(html).not.toMatch(/<script\b[^>]*>(?!<\/script>)/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).toContain('data-refresh="5000"');

    const head = await raw(`${m.url}/_mirror/`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(Number(head.headers['content-length'])).toBe(page.body.length);

    const redirect = await raw(`${m.url}/_mirror`);
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe('/_mirror/');

    const json = await raw(`${m.url}/_mirror/status.json`);
    expect(json.status).toBe(200);
    expect(json.headers['cache-control']).toBe('no-store');
    expect(json.headers['content-type']).toContain('application/json');
    const snapshot = JSON.parse(json.body.toString()) as StatusSnapshot;
    expect(snapshot.totals).toMatchObject({ hits: 0, misses: 0, hitRatio: null, fillsInFlight: 0 });
    expect(snapshot.upstreams.map((u) => [u.name, u.state])).toEqual([['registry.test', 'up']]);

    for (const [asset, type] of [
      ['status.js', 'text/javascript'],
      ['status.css', 'text/css'],
      ['uPlot.iife.min.js', 'text/javascript'],
      ['uPlot.min.css', 'text/css'],
    ] as const) {
      const res = await raw(`${m.url}/_mirror/assets/${asset}`);
      expect(res.status, asset).toBe(200);
      expect(res.headers['content-type'], asset).toContain(type);
      expect(res.body.length, asset).toBeGreaterThan(100);
    }
    for (const path of ['assets/nope.js', 'assets/', 'assets/../status.json', 'assets/%2e%2e%2fpackage.json']) {
      const res = await raw(`${m.url}/_mirror/${path}`);
      expect(res.status, path).toBe(404);
      expect(res.body.toString(), path).toBe('not found');
    }
  });

  it('passes every other /_mirror/ path on: the admin API still answers, and writes are not the page`s', async () => {
    const token = 'a-status-test-token-0123456789';
    const m = await mirror({ admin: { enabled: true, token } });
    const denied = await raw(`${m.url}/_mirror/admin/images`);
    expect(denied.status).toBe(401);
    const listed = await raw(`${m.url}/_mirror/admin/images`, { headers: { Authorization: `Bearer ${token}` } });
    expect(listed.status).toBe(200);
    expect(JSON.parse(listed.body.toString())).toEqual({ images: [] });
    expect((await raw(`${m.url}/_mirror/status.json`, { method: 'POST' })).status).toBe(404);
    expect((await raw(`${m.url}/_mirror/elsewhere`)).status).toBe(404);
  });

  it('on a protected mirror asks for the mirror\'s own credentials, and takes nothing else', async () => {
    const token = 'a-status-test-client-token-0123';
    const m = await mirror({ auth: { tokens: [{ name: 'ci', token }], anonymous: ['registry.test/**'] } });
    for (const path of ['/_mirror/', '/_mirror/status.json', '/_mirror/assets/status.js']) {
      const anonymous = await raw(`${m.url}${path}`);
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.headers['www-authenticate']).toMatch(/^Basic realm=/);
      expect(JSON.parse(anonymous.body.toString())).toMatchObject({ errors: [{ code: 'UNAUTHORIZED' }] });
      expect((await raw(`${m.url}${path}`, { headers: { Authorization: 'Bearer not-the-token' } })).status, path).toBe(401);
      expect((await raw(`${m.url}${path}`, { headers: { Authorization: `Bearer ${token}` } })).status, path).toBe(200);
    }
    // Anonymous pulls stay as the config says; /metrics stays for the scraper.
    expect((await raw(`${m.url}/v2/`)).status).toBe(200);
    expect((await raw(`${m.url}/metrics`)).status).toBe(200);
  });

  it('is off with status.enabled: false', async () => {
    const m = await mirror({ status: { enabled: false } });
    expect(m.status).toBeUndefined();
    expect((await raw(`${m.url}/_mirror/`)).status).toBe(404);
    expect((await raw(`${m.url}/_mirror/status.json`)).status).toBe(404);
    expect((await raw(`${m.url}/metrics`)).status).toBe(200);
  });
});

describe('status config', () => {
  it('defaults to on, every 10 s, 360 points; durations parse as elsewhere; too fast a sampler is refused', () => {
    expect(parseConfig({}).status).toEqual({ enabled: true, sampleInterval: 10_000, points: 360 });
    expect(parseConfig({ status: { sampleInterval: '250ms', points: 20 } }).status).toEqual({ enabled: true, sampleInterval: 250, points: 20 });
    expect(() => parseConfig({ status: { sampleInterval: '10ms' } })).toThrow(/status\.sampleInterval: must be at least 100ms/);
    expect(() => parseConfig({ status: { colour: 'blue' } })).toThrow(/status/);
  });
});

describe('status.json after a known sequence of pulls', () => {
  let scenario: Scenario | undefined;
  afterEach(async () => {
    await scenario?.dispose();
    scenario = undefined;
  });

  it('agrees with /metrics, shows the fill in flight, and shows nothing of the private upstream by name', async () => {
    scenario = await pullScenario();
    const { mirror: m, slow, expected } = scenario;
    const snapshot = await settledSnapshot(m, expected);
    const metrics = figuresFromMetrics(parseMetrics(await metricsText(m)));
    expect(metrics).toMatchObject({ ...expected, fillsInFlight: 1 });
    expect(snapshot.totals).toMatchObject({
      hits: metrics.hits,
      misses: metrics.misses,
      hitRatio: metrics.hitRatio,
      cacheBytes: metrics.cacheBytes,
      upstreamBytes: metrics.upstreamBytes,
      fillsInFlight: metrics.fillsInFlight,
    });
    for (const u of snapshot.upstreams) expect({ requests: u.requests, errors: u.errors }).toEqual(metrics.upstreams[u.name]);

    expect(snapshot.fills).toHaveLength(1);
    expect(snapshot.hiddenFills).toBe(0);
    expect(snapshot.fills[0]).toMatchObject({ digest: slow.digest, repository: 'registry.test/team/app', size: slow.size, clients: 1, state: 'running' });
    expect(snapshot.fills[0]!.received).toBeGreaterThanOrEqual(slow.held);
    expect(snapshot.fills[0]!.received).toBeLessThan(slow.size);

    expect(snapshot.largest.computedAt).not.toBeNull();
    expect(snapshot.largest.repositories.map((r) => r.repository)).toEqual(['registry.test/team/app', 'registry.test/team/tools']);
    expect(snapshot.pulled).toEqual([
      { repository: 'registry.test/team/app', pulls: 2 },
      { repository: 'registry.test/team/tools', pulls: 1 },
    ]);
    const text = JSON.stringify(snapshot);
    expect(text).not.toContain(`${SECRET}/`);
    expect(text).not.toContain(HIDDEN);
    expect(text).not.toContain('payroll');
  });
});
