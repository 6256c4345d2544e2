/**
 * A known sequence of pulls through a real mirror, for the status page's tests: two images of
 * a public upstream pulled cold then warm, one image of an upstream that forwards clients'
 * credentials (whose repository name must never reach the page), and one blob whose fill is
 * held half-way with a client waiting on it. Plus a parser for /metrics to check the page by.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { StatusSnapshot } from '../../src/status/index.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor, type RawResponse } from '../helpers/http.js';
import { parseMetrics, total, type MetricSample } from '../helpers/metrics.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';

export const PUBLIC = 'registry.test';
export const SECRET = 'secret.test';
/** The private upstream's repository: it must appear nowhere on the page. */
export const HIDDEN = 'team/hidden-payroll';
const CREDENTIALS = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;

export interface Scenario {
  mirror: TestMirror;
  upstream: FakeUpstream;
  /** The blob whose fill is held at half its size, a client mid-pull. */
  slow: { digest: string; size: number; held: number };
  /** Cache outcomes the sequence produced (the held pull included). */
  expected: { hits: number; misses: number };
  dispose(): Promise<void>;
}

const timeouts = { connect: '2s', headers: '5s', body: '120s' };

/** An image of one random layer, served by the fake upstream under `repository:tag`. */
export function image(upstream: FakeUpstream, repository: string, tag: string, layerSize: number) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = randomBytes(layerSize);
  const configDigest = upstream.addBlob(config);
  const layerDigest = upstream.addBlob(layer);
  const digest = upstream.addManifest(repository, tag, {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
  });
  return { digest, config: configDigest, layer: layerDigest };
}

export async function pullScenario(): Promise<Scenario> {
  const upstream = await startFakeUpstream();
  let release: () => void = () => {};
  let client: Promise<RawResponse> | undefined;
  let mirror: TestMirror | undefined;
  const dispose = async () => {
    release();
    await client?.catch(() => undefined);
    await mirror?.dispose();
    await upstream.close();
  };
  try {
    mirror = await startTestMirror(upstream.url, {
      upstreams: [
        { name: PUBLIC, url: upstream.url, timeouts },
        { name: SECRET, url: upstream.url, forwardCredentials: true, timeouts },
      ],
      status: { sampleInterval: '200ms' },
    });
    const m = mirror;
    const app = image(upstream, 'team/app', '1.0', 300_000);
    const tools = image(upstream, 'team/tools', '2.0', 100_000);
    const hidden = image(upstream, HIDDEN, '1.0', 50_000);

    const pulls: Array<[path: string, cache: string, headers?: Record<string, string>]> = [
      ['team/app/manifests/1.0', 'MISS'],
      [`team/app/blobs/${app.config}`, 'MISS'],
      [`team/app/blobs/${app.layer}`, 'MISS'],
      ['team/app/manifests/1.0', 'HIT'],
      [`team/app/blobs/${app.config}`, 'HIT'],
      [`team/app/blobs/${app.layer}`, 'HIT'],
      [`team/app/blobs/${app.layer}`, 'HIT'],
      ['team/tools/manifests/2.0', 'MISS'],
      [`team/tools/blobs/${tools.layer}`, 'MISS'],
      [`team/tools/blobs/${tools.layer}`, 'HIT'],
      [`${SECRET}/${HIDDEN}/manifests/1.0`, 'MISS', { Authorization: CREDENTIALS }],
      [`${SECRET}/${HIDDEN}/blobs/${hidden.layer}`, 'MISS', { Authorization: CREDENTIALS }],
    ];
    for (const [path, cache, headers] of pulls) {
      const res = await raw(`${m.url}/v2/${path}`, headers ? { headers } : {});
      expect(res.status, path).toBe(200);
      expect(res.headers['x-mirror-cache'], path).toBe(cache);
      // A blob's second pull must find it stored, not join its fill.
      await waitFor(() => m.mirror.fills.size === 0, 10_000, 'fills to end');
    }
    // Every response has ended (its bytes counted) before anyone looks.
    await waitFor(async () => total(parseMetrics(await metricsText(m)), 'oci_mirror_requests_total') === pulls.length, 10_000, 'requests counted');

    const size = 2_000_000;
    const held = 1_048_576;
    const slow = upstream.addBlob(randomBytes(size));
    upstream.faults.set(slow, { holdAt: held, hold: new Promise<void>((r) => (release = r)) });
    client = raw(`${m.url}/v2/team/app/blobs/${slow}`, { timeoutMs: 120_000 });
    await waitFor(() => (m.mirror.fills.get(slow)?.received ?? 0) >= held, 10_000, 'the slow fill to reach its hold');

    const hits = pulls.filter(([, c]) => c === 'HIT').length;
    return { mirror: m, upstream, slow: { digest: slow, size, held }, expected: { hits, misses: pulls.length - hits + 1 }, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/**
 * status.json once it has caught up with the sequence: the largest repositories read from
 * storage (they are computed in the background) and the pulls sampled into the series.
 */
export async function settledSnapshot(m: TestMirror, expected: Scenario['expected']): Promise<StatusSnapshot> {
  let snapshot: StatusSnapshot | undefined;
  const caughtUp = (s: StatusSnapshot) =>
    s.largest.computedAt !== null &&
    s.series.reduce((n, p) => n + p.hits, 0) === expected.hits &&
    s.series.reduce((n, p) => n + p.misses, 0) === expected.misses;
  await waitFor(
    async () => caughtUp((snapshot = JSON.parse((await raw(`${m.url}/_mirror/status.json`)).body.toString()) as StatusSnapshot)),
    10_000,
    'status.json to catch up with the pulls',
  );
  return snapshot!;
}

export async function metricsText(m: TestMirror): Promise<string> {
  const res = await raw(`${m.url}/metrics`);
  expect(res.status).toBe(200);
  return res.body.toString();
}


/** The figures the page shows, as /metrics has them. */
export function figuresFromMetrics(samples: MetricSample[]) {
  const hits = total(samples, 'oci_mirror_cache_requests_total', { result: ['HIT', 'REVALIDATED', 'STALE'] });
  const misses = total(samples, 'oci_mirror_cache_requests_total', { result: ['MISS', 'JOIN'] });
  return {
    hits,
    misses,
    hitRatio: hits / (hits + misses),
    cacheBytes: total(samples, 'oci_mirror_served_bytes_total', { source: 'cache' }),
    upstreamBytes: total(samples, 'oci_mirror_upstream_fetched_bytes_total'),
    fillsInFlight: total(samples, 'oci_mirror_fills_in_flight'),
    upstreams: Object.fromEntries(
      [PUBLIC, SECRET].map((u) => [
        u,
        { requests: total(samples, 'oci_mirror_upstream_requests_total', { upstream: u }), errors: total(samples, 'oci_mirror_upstream_errors_total', { upstream: u }) },
      ]),
    ),
  };
}
