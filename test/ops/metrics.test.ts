import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/index.js';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';
import { parseMetrics, total } from '../helpers/metrics.js';
import type { TestMirror } from '../helpers/mirror.js';
import { opsFixture } from './fixture.js';

const ops = opsFixture();

/** A series' value from exposition text: the sum of the samples whose labels include `labels`. */
const sample = (text: string, name: string, labels: Record<string, string> = {}): number => total(parseMetrics(text), name, labels);

async function scrape(m: TestMirror): Promise<string> {
  const res = await raw(`${m.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toContain('text/plain');
  return res.body.toString();
}

describe('metrics', () => {
  it('counts one miss and two hits of a blob exactly, and its bytes from upstream once', async () => {
    const m = await ops.mirror();
    const data = randomBytes(200_000);
    const d = ops.upstream.addBlob(data);
    const url = `${m.url}/v2/team/app/blobs/${d}`;
    expect((await raw(url)).headers['x-mirror-cache']).toBe('MISS');
    await waitFor(() => m.mirror.fills.size === 0);
    expect((await raw(url)).headers['x-mirror-cache']).toBe('HIT');
    expect((await raw(url)).headers['x-mirror-cache']).toBe('HIT');

    let text = '';
    await waitFor(async () => sample((text = await scrape(m)), 'oci_mirror_requests_total', { route: 'blob' }) === 3);
    expect(sample(text, 'oci_mirror_requests_total', { route: 'blob', method: 'GET', status: '200' })).toBe(3);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'blob', result: 'MISS' })).toBe(1);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'blob', result: 'HIT' })).toBe(2);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'blob', result: 'JOIN' })).toBe(0);
    expect(sample(text, 'oci_mirror_upstream_fetched_bytes_total', { kind: 'blob' })).toBe(data.length);
    expect(sample(text, 'oci_mirror_served_bytes_total', { kind: 'blob', source: 'cache' })).toBe(2 * data.length);
    expect(sample(text, 'oci_mirror_served_bytes_total', { kind: 'blob', source: 'upstream' })).toBe(data.length);
    expect(sample(text, 'oci_mirror_upstream_requests_total', { upstream: 'registry.test', method: 'GET', status: '200' })).toBe(1);
    expect(sample(text, 'oci_mirror_upstream_request_duration_seconds_count', { upstream: 'registry.test', method: 'GET' })).toBe(1);
    expect(sample(text, 'oci_mirror_fills_total', { outcome: 'committed' })).toBe(1);
    expect(sample(text, 'oci_mirror_fills_in_flight')).toBe(0);
    expect(sample(text, 'oci_mirror_upstream_errors_total')).toBe(0);
    // Process metrics come along on the standalone server.
    expect(text).toContain('process_cpu_user_seconds_total');
  });

  it('counts manifest misses, hits and stale serves, and upstream errors', async () => {
    const m = await ops.mirror({ cache: { tagTtl: '50ms' } });
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] }));
    const d = ops.upstream.addManifest('team/app', '1.0', body);
    const url = (ref: string) => `${m.url}/v2/team/app/manifests/${ref}`;
    expect((await raw(url('1.0'))).headers['x-mirror-cache']).toBe('MISS');
    expect((await raw(url(d))).headers['x-mirror-cache']).toBe('HIT');
    await new Promise((r) => setTimeout(r, 80));
    ops.upstream.failWith = 503;
    expect((await raw(url('1.0'))).headers['x-mirror-cache']).toBe('STALE');

    let text = '';
    await waitFor(async () => sample((text = await scrape(m)), 'oci_mirror_requests_total', { route: 'manifest' }) === 3);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'manifest', result: 'MISS' })).toBe(1);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'manifest', result: 'HIT' })).toBe(1);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'manifest', result: 'STALE' })).toBe(1);
    expect(sample(text, 'oci_mirror_upstream_fetched_bytes_total', { kind: 'manifest' })).toBe(body.length);
    expect(sample(text, 'oci_mirror_served_bytes_total', { kind: 'manifest', source: 'cache' })).toBe(2 * body.length);
    expect(sample(text, 'oci_mirror_upstream_errors_total', { upstream: 'registry.test', reason: 'http 503' })).toBe(1);
  });

  it('counts tag lists by cache outcome under kind tags, apart from the status page’s content figures', async () => {
    const m = await ops.mirror();
    ops.upstream.addManifest('team/app', '1.0', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] });
    const url = `${m.url}/v2/team/app/tags/list`;
    expect((await raw(url)).headers['x-mirror-cache']).toBe('MISS');
    expect((await raw(url)).headers['x-mirror-cache']).toBe('HIT');
    let text = '';
    await waitFor(async () => sample((text = await scrape(m)), 'oci_mirror_requests_total', { route: 'tags' }) === 2);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'tags', result: 'MISS' })).toBe(1);
    expect(sample(text, 'oci_mirror_cache_requests_total', { kind: 'tags', result: 'HIT' })).toBe(1);
    const status = JSON.parse((await raw(`${m.url}/_mirror/status.json`)).body.toString()) as { totals: { hits: number; misses: number } };
    expect([status.totals.hits, status.totals.misses]).toEqual([0, 0]);
  });

  it('counts an upstream that does not answer as an error with its reason', async () => {
    const dead = await startFakeUpstream();
    const deadUrl = dead.url;
    await dead.close();
    const m = await ops.mirror({}, { upstreamUrl: deadUrl });
    const res = await raw(`${m.url}/v2/team/app/manifests/1.0`);
    expect(res.status).toBe(503);
    let text = '';
    await waitFor(async () => sample((text = await scrape(m)), 'oci_mirror_requests_total', { route: 'manifest', status: '503' }) === 1);
    expect(sample(text, 'oci_mirror_upstream_requests_total', { upstream: 'registry.test', status: 'error' })).toBe(1);
    expect(sample(text, 'oci_mirror_upstream_errors_total', { upstream: 'registry.test', reason: 'connection refused' })).toBe(1);
  });

  it('gives each mirror its own registry, or the one it is handed', async () => {
    const [a, b] = [await ops.mirror(), await ops.mirror()];
    const d = ops.upstream.addBlob(randomBytes(1000));
    await raw(`${a.url}/v2/team/app/blobs/${d}`);
    await waitFor(async () => sample(await scrape(a), 'oci_mirror_requests_total') === 1);
    expect(sample(await scrape(b), 'oci_mirror_requests_total')).toBe(0);

    const registry = new Registry();
    const own = createMetrics(b.mirror, { registry });
    expect(own.registry).toBe(registry);
    await raw(`${b.url}/v2/team/app/blobs/${d}`);
    await waitFor(async () => sample(await registry.metrics(), 'oci_mirror_cache_requests_total', { result: 'MISS' }) === 1);
    own.stop();
    await raw(`${b.url}/v2/team/app/blobs/${d}`);
    await waitFor(async () => sample(await scrape(b), 'oci_mirror_requests_total') === 2);
    expect(sample(await registry.metrics(), 'oci_mirror_cache_requests_total')).toBe(1);
    // No process metrics unless asked for.
    expect(await registry.metrics()).not.toContain('process_cpu');
  });
});
