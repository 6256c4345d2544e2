/**
 * Small requests, as requests per second with wrk (`-t2 -c32 -d10s` by default): a manifest by
 * tag, warm and within its TTL, and a warm 4 KB blob, each from the mirror, from distribution's
 * proxy mode and from nginx serving the same bytes. Each round starts a fresh mirror and a
 * fresh proxy, pulls the manifest and the blob through each once (and waits until the blob is
 * stored), then runs wrk on each in turn. wrk runs on the same 2 cores as the servers, as curl
 * does for the big cases. Without wrk these cases are skipped with a note; they never fail the
 * bench.
 */
import { randomBytes } from 'node:crypto';
import { buildImage, MediaType, pushImage, sha256, type Layer } from '../test/helpers/images.js';
import { mirrorIn, withDataDir, type Bench, type Setup } from './cases.js';
import { wrk } from './measure.js';
import { wrkRun, type Round, type Run } from './report.js';
import { startProxyRegistry, waitProxyStored, waitStored, type NginxFile, type Upstream } from './servers.js';

export interface RequestsSetup {
  repository: string;
  tag: string;
  manifest: { bytes: Buffer; mediaType: string };
  blob: { bytes: Buffer; digest: string };
  wrk: { threads: number; connections: number; seconds: number };
}

/** Pushes `repository:v1`, an image of one 4 KB layer of random bytes, to the upstream. */
export async function pushSmallImage(upstream: Upstream, repository: string, wrkOptions: RequestsSetup['wrk']): Promise<RequestsSetup> {
  const bytes = randomBytes(4096);
  const layer: Layer = { bytes, digest: sha256(bytes), size: bytes.length, diffId: sha256(bytes), gzip: false };
  const image = buildImage('oci', [layer]);
  await pushImage(upstream, repository, 'v1', image);
  return {
    repository,
    tag: 'v1',
    manifest: { bytes: image.manifest.bytes!, mediaType: MediaType.ociManifest },
    blob: { bytes, digest: layer.digest },
    wrk: wrkOptions,
  };
}

/** What nginx serves for these cases: `/manifest` and `/small`, the same bytes as the registries. */
export const nginxFiles = (r: RequestsSetup): NginxFile[] => [
  { name: 'manifest', bytes: r.manifest.bytes, type: r.manifest.mediaType },
  { name: 'small', bytes: r.blob.bytes, type: 'application/octet-stream' },
];

/** One GET through a server, to warm it; throws unless it answers 200 with the expected bytes. */
async function get(url: string, accept: string, expected: Buffer): Promise<void> {
  const res = await fetch(url, { headers: { accept }, signal: AbortSignal.timeout(30_000) });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200 || !body.equals(expected)) throw new Error(`GET ${url} answered ${res.status} with ${body.length} bytes`);
}

export async function requestCases(s: Setup, r: RequestsSetup, b: Bench, i: number): Promise<Round> {
  const manifestPath = `/v2/${r.repository}/manifests/${r.tag}`;
  const blobPath = `/v2/${r.repository}/blobs/${r.blob.digest}`;
  const accept = r.manifest.mediaType;
  const warm = async (base: string): Promise<void> => {
    await get(`${base}${manifestPath}`, accept, r.manifest.bytes);
    await get(`${base}${blobPath}`, '*/*', r.blob.bytes);
  };
  const measure = async (server: readonly number[], url: string, upstreamPath: string, bytesEach: number, headers: Record<string, string> = {}): Promise<Run> => {
    const before = await s.upstream.requests(upstreamPath);
    const run = await b.measured({ server, digest: r.blob.digest }, async () => wrkRun(await wrk(url, { ...r.wrk, headers }), bytesEach));
    return { ...run, upstreamRequests: (await s.upstream.requests(upstreamPath)) - before };
  };
  const manifest = (server: readonly number[], url: string): Promise<Run> =>
    measure(server, url, manifestPath, r.manifest.bytes.length, { Accept: accept });
  const blob = (server: readonly number[], url: string): Promise<Run> => measure(server, url, blobPath, r.blob.bytes.length);

  const proxy = await startProxyRegistry(s.upstream.url);
  try {
    await warm(proxy.url);
    await waitProxyStored(proxy, r.repository, r.blob.digest);
    return await withDataDir(s, `requests-${i + 1}`, async (dataDir) => {
      const mirror = await mirrorIn(s, dataDir, `small requests (wrk), round ${i + 1}`);
      try {
        await warm(mirror.url);
        await waitStored(`${mirror.url}${blobPath}`);
        const nginx = [s.nginx.pid];
        return {
          manifestNginx: await manifest(nginx, `${s.nginx.url}/manifest`),
          manifestProxy: await manifest(proxy.pids, `${proxy.url}${manifestPath}`),
          manifestMirror: await manifest([mirror.pid], `${mirror.url}${manifestPath}`),
          smallNginx: await blob(nginx, `${s.nginx.url}/small`),
          smallProxy: await blob(proxy.pids, `${proxy.url}${blobPath}`),
          smallMirror: await blob([mirror.pid], `${mirror.url}${blobPath}`),
        };
      } finally {
        await mirror.stop();
      }
    });
  } finally {
    await proxy.destroy();
  }
}
