import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { MirrorEventMap, MirrorEventName } from './index.js';
import { MirrorEvents } from './index.js';
import { raw, waitFor } from '../../test/helpers/http.js';
import type { TestMirror } from '../../test/helpers/mirror.js';
import { opsFixture } from '../../test/ops/fixture.js';

const ops = opsFixture();
const mirror = () => ops.mirror();

function record(m: TestMirror) {
  const seen: Array<{ name: MirrorEventName; event: MirrorEventMap[MirrorEventName] }> = [];
  for (const name of ['request', 'cache', 'served', 'fill:start', 'fill:end', 'upstream', 'eviction'] as const) {
    m.mirror.events.on(name, (event) => seen.push({ name, event }));
  }
  const of = <K extends MirrorEventName>(name: K) => seen.filter((s) => s.name === name).map((s) => s.event as MirrorEventMap[K]);
  return { seen, of };
}

describe('mirror events', () => {
  it('tells a blob miss, its fill and upstream request, then a hit', async () => {
    const m = await mirror();
    const { of } = record(m);
    const data = randomBytes(100_000);
    const d = ops.upstream.addBlob(data);
    const url = `${m.url}/v2/team/app/blobs/${d}`;

    expect((await raw(url)).status).toBe(200);
    await waitFor(() => of('fill:end').length === 1 && of('served').length === 1 && of('request').length === 1);
    expect((await raw(url)).headers['x-mirror-cache']).toBe('HIT');
    await waitFor(() => of('served').length === 2 && of('request').length === 2);

    expect(of('cache').map((e) => [e.kind, e.result, e.digest, e.upstream, e.repository])).toEqual([
      ['blob', 'MISS', d, 'registry.test', 'team/app'],
      ['blob', 'HIT', d, 'registry.test', 'team/app'],
    ]);
    expect(of('served').map((e) => [e.result, e.status, e.bytes, e.complete])).toEqual([
      ['MISS', 200, data.length, true],
      ['HIT', 200, data.length, true],
    ]);
    expect(of('fill:start')).toEqual([{ digest: d }]);
    expect(of('fill:end')).toMatchObject([{ digest: d, outcome: 'committed', bytes: data.length }]);
    expect(of('upstream')).toMatchObject([{ upstream: 'registry.test', method: 'GET', repository: 'team/app', status: 200 }]);
    expect(of('request').map((e) => [e.route, e.method, e.status])).toEqual([
      ['blob', 'GET', 200],
      ['blob', 'GET', 200],
    ]);
  });

  it('tells manifest outcomes and upstream errors', async () => {
    const m = await mirror();
    const { of } = record(m);
    ops.upstream.addManifest('team/app', '1.0', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] });
    await raw(`${m.url}/v2/team/app/manifests/1.0`);
    await raw(`${m.url}/v2/team/app/manifests/nope`);
    await waitFor(() => of('request').length === 2);
    expect(of('cache').map((e) => [e.kind, e.result])).toEqual([['manifest', 'MISS']]);
    expect(of('request').map((e) => [e.route, e.status])).toEqual([
      ['manifest', 200],
      ['manifest', 404],
    ]);
    expect(of('upstream').map((e) => [e.method, e.status])).toEqual([
      ['HEAD', 200],
      ['GET', 200],
      ['HEAD', 404],
    ]);
  });

  it('keeps two mirrors in one process apart', async () => {
    const [a, b] = [await mirror(), await mirror()];
    const ra = record(a);
    const rb = record(b);
    const d = ops.upstream.addBlob(randomBytes(1000));
    await raw(`${a.url}/v2/team/app/blobs/${d}`);
    await waitFor(() => ra.of('request').length === 1);
    expect(rb.seen).toEqual([]);
  });

  it('survives a listener that throws', async () => {
    const events = new MirrorEvents();
    const got: string[] = [];
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    events.on('fill:start', () => {
      throw new Error('observer bug');
    });
    const off = events.on('fill:start', (e) => got.push(e.digest));
    events.emit('fill:start', { digest: 'x' });
    off();
    events.emit('fill:start', { digest: 'y' });
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    expect(got).toEqual(['x']);
    expect(warnings.map((w) => w.message)).toEqual(['observer bug', 'observer bug']);
  });
});
