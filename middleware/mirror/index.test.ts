/**
 * The README's two library examples, run for real: the mirror mounted beside an app's own
 * routes, and the middlewares composed by hand with a custom one in between.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Router from '@koa/router';
import Koa from 'koa';
import compose from 'koa-compose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  blobCache,
  createFills,
  createMirror,
  createUpstream,
  fsStorage,
  Links,
  listProxy,
  manifestCache,
  OciError,
  ociErrors,
  ociRequest,
  parseConfig,
  upstreamSelect,
} from '../../src/index.js';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';

let upstream: FakeUpstream;
let dataDir: string;
let server: Server | undefined;
const cleanup: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  upstream = await startFakeUpstream();
  dataDir = await mkdtemp(join(tmpdir(), 'oci-compose-'));
});
afterEach(async () => {
  if (server) await new Promise((r) => server!.close(r));
  server = undefined;
  for (const c of cleanup.splice(0)) await c();
  await upstream.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function listen(app: Koa): Promise<string> {
  server = createServer(app.callback()).listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('library use', () => {
  it('mounts beside an application’s own routes', async () => {
    const app = new Koa();
    const router = new Router();
    router.get('/artifacts/:id', (ctx) => {
      ctx.body = { id: ctx.params.id };
    });
    const mirror = createMirror(
      parseConfig({
        storage: { type: 'fs', path: dataDir, fsync: false },
        upstreams: [{ name: 'registry.test', url: upstream.url }],
      }),
    );
    cleanup.push(() => mirror.close(1000));
    app.use(mirror);
    app.use(router.routes());
    const url = await listen(app);

    const artifact = await raw(`${url}/artifacts/42`);
    expect(JSON.parse(artifact.body.toString())).toEqual({ id: '42' });
    const d = upstream.addBlob(Buffer.from('layer'));
    const blob = await raw(`${url}/v2/team/app/blobs/${d}`);
    expect(blob.body.toString()).toBe('layer');
    const missing = await raw(`${url}/nothing`);
    expect(missing.status).toBe(404);
    expect(missing.headers['docker-distribution-api-version']).toBeUndefined();
  });

  it('composes by hand with a custom middleware in between', async () => {
    const storage = fsStorage({ path: dataDir, fsync: false });
    const up = createUpstream({ name: 'docker.io', url: upstream.url });
    cleanup.push(() => up.close());
    const fills = createFills({ store: storage.blobs });
    const links = new Links(storage.meta);
    await storage.blobs.recover();
    const onlyLibrary: Koa.Middleware = async (ctx, next) => {
      const route = ctx.state.oci;
      if (route && route.kind !== 'base' && !route.name.startsWith('library/')) {
        throw new OciError('DENIED', 'only library/ images are mirrored here');
      }
      await next();
    };
    const app = new Koa();
    app.use(
      compose([
        ociErrors(),
        ociRequest(),
        onlyLibrary,
        upstreamSelect({ upstreams: [up] }),
        manifestCache({ blobs: storage.blobs, meta: storage.meta, links, tagTtl: 60_000 }),
        blobCache({ blobs: storage.blobs, fills, links }),
        listProxy(),
      ]),
    );
    const url = await listen(app);
    const denied = await raw(`${url}/v2/team/app/manifests/latest`);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body.toString()).errors[0].code).toBe('DENIED');
    upstream.addManifest('library/alpine', '3', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json' });
    const ok = await raw(`${url}/v2/library/alpine/manifests/3`);
    expect(ok.status).toBe(200);
  });

  it('maps Docker Hub single-segment names to library/', async () => {
    const mirror = createMirror(
      parseConfig({ storage: { type: 'fs', path: dataDir, fsync: false }, upstreams: [{ name: 'docker.io', url: upstream.url }] }),
    );
    cleanup.push(() => mirror.close(1000));
    const app = new Koa();
    app.use(mirror);
    const url = await listen(app);
    upstream.addManifest('library/alpine', '3.20', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json' });
    const res = await raw(`${url}/v2/alpine/manifests/3.20`);
    expect(res.status).toBe(200);
    expect(upstream.requests.some((r) => r.path === '/v2/library/alpine/manifests/3.20')).toBe(true);
    const tags = await raw(`${url}/v2/alpine/tags/list`);
    expect(JSON.parse(tags.body.toString())).toEqual({ name: 'alpine', tags: ['3.20'] });
  });

  it('passes referrers through, and an upstream without the API as 404 so clients fall back', async () => {
    const mirror = createMirror(parseConfig({ storage: { type: 'fs', path: dataDir, fsync: false }, upstreams: [{ name: 'registry.test', url: upstream.url }] }));
    cleanup.push(() => mirror.close(1000));
    const app = new Koa();
    app.use(mirror);
    const url = await listen(app);
    const res = await raw(`${url}/v2/team/app/referrers/sha256:${'c'.repeat(64)}`);
    expect(res.status).toBe(404);
    expect(upstream.requests.some((r) => r.path.startsWith('/v2/team/app/referrers/'))).toBe(true);
    const subject = `sha256:${'d'.repeat(64)}`;
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ artifactType: 'application/spdx+json' }] };
    upstream.referrers.set(subject, index);
    const found = await raw(`${url}/v2/team/app/referrers/${subject}?artifactType=application/spdx%2Bjson`);
    expect(found.status).toBe(200);
    expect(found.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
    expect(found.headers['oci-filters-applied']).toBe('artifactType');
    expect(JSON.parse(found.body.toString())).toEqual(index);
    const bad = await raw(`${url}/v2/team/app/referrers/sha256:nothex`);
    expect(bad.status).toBe(400);
  });
});
