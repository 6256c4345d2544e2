/**
 * Mirror replicas over one S3 bucket (s3rver) and one Redis (redis-server), in front of a fake
 * upstream that counts GETs: what one replica cached the other serves; concurrent cold pulls
 * across both cause one upstream GET and one upload; a holder killed mid-fill (a child
 * process, SIGKILL) leaves the blob to the survivor, landed once and verified; a replica that
 * saw nothing answers HEAD of a blob over its `fill.maxBlobBytes` as another answered the GET;
 * and a tag one replica revalidated is seen by the other.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type MirrorConfigInput } from '../../src/config.js';
import { digestOf } from '../../src/digest.js';
import { startServer, type MirrorServer } from '../../src/server.js';
import { collect } from '../conformance/helpers.js';
import { sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';
import { parseMetrics, total } from '../helpers/metrics.js';
import { spawnTracked, terminate, terminateAll, type Tracked } from '../helpers/processes.js';
import { REDIS_INSTALL_HINT, startRedis, type RunningRedis } from '../helpers/redis.js';
import { freePort } from '../helpers/registry.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../helpers/s3.js';
import { requireTool } from '../helpers/tools.js';

const MiB = 1024 * 1024;
const TAG_TTL_MS = 3_000;
const SECRET = 'replica-secret-for-tests';
const CLI = join(process.cwd(), 'src', 'cli.ts');

const redisInstalled = requireTool('redis-server', REDIS_INSTALL_HINT);

describe.skipIf(!redisInstalled)('mirror replicas on one S3 bucket and one Redis', () => {
  let s3: RunningS3 | undefined;
  let redis: RunningRedis | undefined;
  let upstream: FakeUpstream | undefined;
  /** A second upstream that has none of the blobs: its route must never get them from the other replica's fill. */
  let other: FakeUpstream | undefined;
  let work: string;
  let a: MirrorServer;
  let b: MirrorServer;
  const servers: MirrorServer[] = [];
  const children: Tracked[] = [];
  /** Upload starts (PutObject or CreateMultipartUpload) per blob key seen by S3. */
  const uploads = new Map<string, number>();

  const config = async (port: number, fill: MirrorConfigInput['fill'] = {}): Promise<MirrorConfigInput> => ({
    listen: `127.0.0.1:${port}`,
    storage: {
      blobs: { type: 's3', bucket: s3!.bucket, prefix: 'replicas', endpoint: s3!.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS },
      meta: { type: 'keyv', url: redis!.url, namespace: 'replicas' },
    },
    upstreams: [
      { name: 'registry.test', url: upstream!.url, timeouts: { connect: '2s', headers: '5s', body: '5s' } },
      { name: 'other.test', url: other!.url, timeouts: { connect: '2s', headers: '5s', body: '5s' } },
    ],
    cache: { tagTtl: `${TAG_TTL_MS}ms` },
    fill: { spoolDir: join(work, `spool-${port}`), ...fill },
    shutdownGrace: '1s',
    replication: { redis: redis!.url, advertise: `http://127.0.0.1:${port}`, secret: SECRET },
  });

  /** `fill`: limits of this replica's own, over the same store as the others. */
  const startReplica = async (fill?: MirrorConfigInput['fill']): Promise<MirrorServer> => {
    const server = await startServer(parseConfig(await config(await freePort(), fill)), { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
    servers.push(server);
    return server;
  };

  /** A replica in its own process, so that it can be killed with SIGKILL. */
  const startChildReplica = async (): Promise<{ proc: Tracked; url: string }> => {
    const port = await freePort();
    const path = join(work, `replica-${port}.yaml`);
    // JSON is YAML.
    await writeFile(path, JSON.stringify(await config(port)));
    const proc = spawnTracked(process.execPath, ['--import', 'tsx', CLI, '--config', path], { env: { ...process.env, LOG_LEVEL: 'info' } });
    children.push(proc);
    await waitFor(
      () => {
        if (proc.exit()) throw new Error(`replica exited: ${proc.output()}`);
        return proc.stdout().includes('mirror listening');
      },
      20_000,
      'the child replica to listen',
    );
    return { proc, url: `http://127.0.0.1:${port}` };
  };

  const blobUrl = (server: { url: string }, digest: string) => `${server.url}/v2/team/app/blobs/${digest}`;
  const stored = async (digest: string) => {
    const blobs = a.mirror.storage.blobs;
    const stream = await blobs.read(digest);
    return stream && Buffer.concat(await collect(stream));
  };
  const uploadsOf = (digest: string) => uploads.get(digest.replace(':', '/')) ?? 0;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-replicas-'));
    [s3, redis, upstream, other] = await Promise.all([startS3(), startRedis(), startFakeUpstream(), startFakeUpstream()]);
    s3.onRequest = ({ method, path, query }) => {
      const upload = (method === 'PUT' && !('partNumber' in query)) || (method === 'POST' && 'uploads' in query);
      const key = /blobs\/(sha256\/[a-f0-9]{64})/.exec(path)?.[1] ?? /(sha256\/[a-f0-9]{64})/.exec(path)?.[1];
      if (upload && key) uploads.set(key, (uploads.get(key) ?? 0) + 1);
    };
    a = await startReplica();
    b = await startReplica();
  });

  afterAll(async () => {
    await Promise.allSettled(servers.map((s) => s.close(500)));
    await Promise.allSettled(children.map((p) => terminate(p, 2_000)));
    await Promise.allSettled([s3?.destroy(), redis?.destroy(), upstream?.close(), other?.close()]);
    await terminateAll(2_000);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('serves from B everything A cached, with the upstream down', async () => {
    const layer = randomBytes(MiB);
    const layerDigest = upstream!.addBlob(layer);
    const manifestDigest = upstream!.addManifest('team/app', 'v1', { schemaVersion: 2, layers: [{ digest: layerDigest, size: layer.length }] });

    const manifest = await raw(`${a.url}/v2/team/app/manifests/v1`);
    expect(manifest.status).toBe(200);
    expect((await raw(blobUrl(a, layerDigest))).body.equals(layer)).toBe(true);
    await waitFor(async () => (await a.mirror.storage.blobs.stat(layerDigest)) !== undefined, 10_000, 'the layer to land in S3');

    upstream!.failWith = 503;
    try {
      const byTag = await raw(`${b.url}/v2/team/app/manifests/v1`);
      expect(byTag.status).toBe(200);
      expect(byTag.headers['docker-content-digest']).toBe(manifestDigest);
      expect(byTag.body.equals(manifest.body)).toBe(true);
      expect((await raw(`${b.url}/v2/team/app/manifests/${manifestDigest}`)).status).toBe(200);
      const blob = await raw(blobUrl(b, layerDigest));
      expect(blob.status).toBe(200);
      expect(blob.headers['x-mirror-cache']).toBe('HIT');
      expect(blob.body.equals(layer)).toBe(true);
    } finally {
      upstream!.failWith = undefined;
    }
  });

  it('twenty concurrent clients across both replicas: one upstream GET, one upload, all bytes right', async () => {
    const data = randomBytes(4 * MiB);
    const digest = upstream!.addBlob(data);
    // About 1.3 s upstream: every client arrives while the one fill is running.
    upstream!.faults.set(digest, { delayMs: 20, chunkSize: 64 * 1024 });
    /** Blob bytes both replicas fetched from the upstream, and relayed from each other. */
    const traffic = async () => {
      const samples = [...parseMetrics(await a.metrics.text()), ...parseMetrics(await b.metrics.text())];
      return { fetched: total(samples, 'oci_mirror_upstream_fetched_bytes_total', { kind: 'blob' }), relayed: total(samples, 'oci_mirror_relayed_bytes_total') };
    };
    const before = await traffic();
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => raw(blobUrl(i % 2 ? b : a, digest))));
    const elapsed = Date.now() - started;

    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(results.every((r) => r.complete && r.body.equals(data))).toBe(true);
    expect(upstream!.count('GET', `/blobs/${digest}`)).toBe(1);
    await waitFor(async () => (await stored(digest))?.equals(data) ?? false, 10_000, 'the blob to land in S3');
    // The replica that relayed found the holder's commit and uploaded nothing.
    await sleep(300);
    expect(uploadsOf(digest)).toBe(1);
    // Each replica's metrics say where its bytes came from: the upstream's 4 MiB counted once,
    // the other replica's relay as relayed, not as a second fetch.
    const after = await traffic();
    expect(after.fetched - before.fetched).toBe(data.length);
    expect(after.relayed - before.relayed).toBe(data.length);
    console.info(`20 clients over 2 replicas, 4 MiB cold blob: ${elapsed} ms`);
  });

  it("relays a fill in flight only to a route whose own upstream has the blob (GET and HEAD, before and after the commit)", async () => {
    const data = randomBytes(2 * MiB);
    const digest = upstream!.addBlob(data);
    let release!: () => void;
    upstream!.faults.set(digest, { holdAt: MiB, hold: new Promise<void>((r) => (release = r)) });
    const filling = raw(blobUrl(a, digest));
    await waitFor(() => upstream!.count('GET', `/blobs/${digest}`) === 1, 10_000, 'A to start the fill');
    const viaOther = `${blobUrl(b, digest)}?ns=other.test`;
    const refused = async () => {
      for (const method of ['GET', 'HEAD']) {
        const res = await raw(viaOther, { method });
        expect(res.status, method).toBe(404);
        if (method === 'GET') expect(JSON.parse(res.body.toString()).errors[0].code).toBe('BLOB_UNKNOWN');
      }
    };
    // B joins the lease A holds and relays A's fill, but other.test is asked and says no.
    await refused();
    release();
    expect((await filling).body.equals(data)).toBe(true);
    await waitFor(async () => (await stored(digest))?.equals(data) ?? false, 10_000, 'the blob to land in S3');
    await refused();
    expect(other!.count('GET', `/blobs/${digest}`)).toBe(0);
    expect(other!.count('HEAD', `/blobs/${digest}`)).toBeGreaterThan(0);
    // The route that fetched it is served by B from storage.
    expect((await raw(blobUrl(b, digest))).body.equals(data)).toBe(true);
  });

  it('takes the fill over when the holder is killed mid-fill; the blob lands once, verified', async () => {
    const data = randomBytes(8 * MiB);
    const digest = upstream!.addBlob(data);
    let resume!: () => void;
    upstream!.faults.set(digest, { holdAt: 2 * MiB, hold: new Promise<void>((r) => (resume = r)), chunkSize: 256 * 1024 });
    const child = await startChildReplica();

    // The child claims the blob and gets stuck after 2 MiB; a client of B joins through the relay.
    const first = raw(blobUrl(child, digest), { timeoutMs: 20_000 }).catch(() => undefined);
    await waitFor(() => upstream!.count('GET', `/blobs/${digest}`) === 1, 10_000, 'the holder to start its fill');
    const relayed = raw(blobUrl(b, digest), { timeoutMs: 20_000 }).catch(() => undefined);
    await waitFor(() => b.mirror.fills.get(digest)?.received !== undefined && b.mirror.fills.get(digest)!.received > 0, 10_000, 'B to relay');
    expect(upstream!.count('GET', `/blobs/${digest}`)).toBe(1);

    const killedAt = Date.now();
    child.proc.child.kill('SIGKILL');
    await child.proc.exited;
    resume();
    upstream!.faults.delete(digest);
    // B's relay breaks with the holder; B waits the lease out, takes it over and resumes from
    // the upstream where the relay broke: its client sees a pause, not an error.
    const resumed = await relayed;
    console.info(`holder killed: B's client finished ${Date.now() - killedAt} ms later`);
    expect(resumed?.status).toBe(200);
    expect(resumed?.complete).toBe(true);
    expect(resumed?.body.equals(data)).toBe(true);
    await first;
    const again = await raw(blobUrl(b, digest));
    expect(again.body.equals(data)).toBe(true);

    await waitFor(async () => (await stored(digest))?.equals(data) ?? false, 10_000, 'the blob to land in S3');
    expect(digestOf(await stored(digest) ?? Buffer.alloc(0))).toBe(sha256(data));
    expect(upstream!.count('GET', `/blobs/${digest}`)).toBe(2);
    expect(uploadsOf(digest)).toBe(1);
  });

  it('answers HEAD of a blob over fill.maxBlobBytes on a replica that saw nothing as the other answered its GET: 403, nothing fetched', async () => {
    // Two replicas with a low limit, over the store A and B fill without one.
    const [c, d] = [await startReplica({ maxBlobBytes: 64 * 1024 }), await startReplica({ maxBlobBytes: 64 * 1024 })];
    const over = randomBytes(4 * MiB);
    const overDigest = upstream!.addBlob(over);
    const gets = () => upstream!.count('GET', `/blobs/${overDigest}`);

    // No replica holds or fills it: C's HEAD asks the upstream a HEAD, and nobody the body.
    const asked = await raw(blobUrl(c, overDigest), { method: 'HEAD' });
    expect([asked.status, asked.body.length]).toEqual([403, 0]);
    expect(gets()).toBe(0);
    const get = await raw(blobUrl(c, overDigest));
    expect(get.status).toBe(403);
    expect(JSON.parse(get.body.toString()).errors[0]).toMatchObject({ code: 'DENIED', message: expect.stringMatching(/larger than this mirror fetches/) });
    // Refused on the upstream's headers.
    expect(gets()).toBe(1);

    // D saw none of that, and C holds nothing: D's HEAD, by the route and by ?ns=, is C's GET without its body.
    for (const url of [blobUrl(d, overDigest), `${blobUrl(d, overDigest)}?ns=registry.test`]) {
      const head = await raw(url, { method: 'HEAD' });
      expect([head.status, head.body.length], url).toEqual([403, 0]);
      for (const name of ['content-type', 'content-length', 'docker-content-digest', 'x-mirror-cache']) expect(head.headers[name], name).toBe(get.headers[name]);
    }
    expect(gets()).toBe(1);
    expect(await a.mirror.storage.blobs.stat(overDigest)).toBeUndefined();

    // What A stored without the limit, the limited replicas serve from the store, to HEAD and GET.
    const kept = randomBytes(MiB);
    const keptDigest = upstream!.addBlob(kept);
    expect((await raw(blobUrl(a, keptDigest))).body.equals(kept)).toBe(true);
    await waitFor(async () => (await stored(keptDigest))?.equals(kept) ?? false, 10_000, 'the blob to land in S3');
    for (const r of [c, d]) {
      const head = await raw(blobUrl(r, keptDigest), { method: 'HEAD' });
      expect([head.status, head.headers['content-length'], head.headers['x-mirror-cache']]).toEqual([200, String(kept.length), 'HIT']);
      const hit = await raw(blobUrl(r, keptDigest));
      expect([hit.status, hit.headers['x-mirror-cache'], hit.body.equals(kept)]).toEqual([200, 'HIT', true]);
    }
    expect(upstream!.count('GET', `/blobs/${keptDigest}`)).toBe(1);
  });

  it('sees on B a tag that A revalidated', async () => {
    const first = upstream!.addManifest('team/tagged', 'latest', { schemaVersion: 2, layers: [], annotations: { v: '1' } });
    expect((await raw(`${a.url}/v2/team/tagged/manifests/latest`)).headers['docker-content-digest']).toBe(first);
    expect((await raw(`${b.url}/v2/team/tagged/manifests/latest`)).headers['docker-content-digest']).toBe(first);

    const second = upstream!.addManifest('team/tagged', 'latest', { schemaVersion: 2, layers: [], annotations: { v: '2' } });
    await sleep(TAG_TTL_MS + 200);
    expect((await raw(`${a.url}/v2/team/tagged/manifests/latest`)).headers['docker-content-digest']).toBe(second);
    const asked = upstream!.requests.length;
    const onB = await raw(`${b.url}/v2/team/tagged/manifests/latest`);
    expect(onB.headers['docker-content-digest']).toBe(second);
    // B took A's revalidation as fresh: it did not ask the upstream itself.
    expect(upstream!.requests.length).toBe(asked);
  });
});
