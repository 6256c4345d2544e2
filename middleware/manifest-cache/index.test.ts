import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sha256, startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

let upstream: FakeUpstream;
let mirror: TestMirror;

beforeEach(async () => {
  upstream = await startFakeUpstream();
  // Tags age on a clock of the test's own (only Date is faked, before the mirror takes its
  // clock; I/O keeps real timers): on real time, a loaded machine let a tag expire between
  // two requests meant to fall within its 200 ms.
  vi.useFakeTimers({ toFake: ['Date'] });
  mirror = await startTestMirror(upstream.url, { cache: { tagTtl: '200ms' } });
});
afterEach(async () => {
  vi.useRealTimers();
  await mirror.dispose();
  await upstream.close();
});

const manifestUrl = (ref: string, name = 'team/app') => `${mirror.url}/v2/${name}/manifests/${ref}`;
const errorCode = (body: Buffer) => (JSON.parse(body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code;
/** Lets `ms` pass on the mirror's clock. */
const later = (ms: number) => vi.advanceTimersByTime(ms);

function image(n = 1) {
  // Key order and spacing as an upstream wrote them: the mirror must keep the exact bytes.
  return Buffer.from(`{"schemaVersion":2,  "mediaType":"${OCI_MANIFEST}","config":{"digest":"sha256:${String(n).padStart(64, '0')}"}}`);
}

describe('manifest cache', () => {
  it('stores the exact bytes and serves them with digest, type, length and ETag', async () => {
    const body = image();
    const d = upstream.addManifest('team/app', '1.0', body, OCI_MANIFEST);
    const res = await raw(manifestUrl('1.0'));
    expect(res.status).toBe(200);
    expect(res.body.equals(body)).toBe(true);
    expect(res.headers['content-type']).toBe(OCI_MANIFEST);
    expect(res.headers['docker-content-digest']).toBe(d);
    expect(res.headers['content-length']).toBe(String(body.length));
    expect(res.headers.etag).toBe(`"${d}"`);
    const head = await raw(manifestUrl(d), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(body.length));
    expect(head.headers['docker-content-digest']).toBe(d);
    const notModified = await raw(manifestUrl('1.0'), { headers: { 'If-None-Match': `"${d}"` } });
    expect(notModified.status).toBe(304);
  });

  it('asks the upstream for every manifest media type', async () => {
    upstream.addManifest('team/app', '1.0', image());
    await raw(manifestUrl('1.0'), { headers: { Accept: OCI_MANIFEST } });
    const sent = upstream.requests.filter((r) => r.path.includes('/manifests/'));
    expect(sent.length).toBeGreaterThan(0);
    for (const r of sent) {
      for (const t of [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, 'application/vnd.docker.distribution.manifest.list.v2+json']) {
        expect(r.headers.accept).toContain(t);
      }
    }
  });

  it('serves a digest from cache forever and a tag until it expires, then revalidates with HEAD', async () => {
    const d = upstream.addManifest('team/app', '1.0', image());
    await raw(manifestUrl('1.0'));
    expect(upstream.count('GET', '/manifests/')).toBe(1);
    const hit = await raw(manifestUrl('1.0'));
    expect(hit.headers['x-mirror-cache']).toBe('HIT');
    const byDigest = await raw(manifestUrl(d));
    expect(byDigest.headers['x-mirror-cache']).toBe('HIT');
    later(250);
    const revalidated = await raw(manifestUrl('1.0'));
    expect(revalidated.headers['x-mirror-cache']).toBe('REVALIDATED');
    expect(upstream.count('HEAD', '/manifests/1.0')).toBe(2);
    expect(upstream.count('GET', '/manifests/')).toBe(1);
  });

  it('fetches the body again only when the tag moved', async () => {
    upstream.addManifest('team/app', 'latest', image(1));
    await raw(manifestUrl('latest'));
    const moved = upstream.addManifest('team/app', 'latest', image(2));
    later(250);
    const res = await raw(manifestUrl('latest'));
    expect(res.headers['docker-content-digest']).toBe(moved);
    expect(res.body.equals(image(2))).toBe(true);
    expect(upstream.count('GET', '/manifests/latest')).toBe(2);
  });

  it('serves a cached tag stale when the upstream is down or failing, and says so', async () => {
    const d = upstream.addManifest('team/app', '1.0', image());
    await raw(manifestUrl('1.0'));
    later(250);
    upstream.failWith = 503;
    const failing = await raw(manifestUrl('1.0'));
    expect(failing.status).toBe(200);
    expect(failing.headers['x-mirror-cache']).toBe('STALE');
    expect(failing.headers.warning).toContain('110');
    upstream.failWith = 429;
    expect((await raw(manifestUrl('1.0'))).headers['x-mirror-cache']).toBe('STALE');
    await upstream.close();
    const down = await raw(manifestUrl('1.0'));
    expect(down.status).toBe(200);
    expect(down.headers['docker-content-digest']).toBe(d);
    expect(down.headers['x-mirror-cache']).toBe('STALE');
  });

  it('passes an upstream 404 through and forgets the tag', async () => {
    upstream.addManifest('team/app', '1.0', image());
    await raw(manifestUrl('1.0'));
    upstream.manifests.delete('team/app:1.0');
    later(250);
    const gone = await raw(manifestUrl('1.0'));
    expect(gone.status).toBe(404);
    expect(errorCode(gone.body)).toBe('MANIFEST_UNKNOWN');
    await upstream.close();
    const after = await raw(manifestUrl('1.0'));
    expect(after.status).toBe(503);
  });

  it('answers UNAVAILABLE for an uncached tag when the upstream is down', async () => {
    await upstream.close();
    const res = await raw(manifestUrl('1.0'));
    expect(res.status).toBe(503);
    expect(errorCode(res.body)).toBe('UNAVAILABLE');
  });

  it('refuses a manifest that does not match the digest it was fetched by, and stores nothing', async () => {
    const good = image(1);
    const d = sha256(good);
    upstream.manifests.set(`team/app@${d}`, { body: image(2), mediaType: OCI_MANIFEST });
    const res = await raw(manifestUrl(d));
    expect(res.status).toBe(502);
    expect(errorCode(res.body)).toBe('DIGEST_INVALID');
    expect(await mirror.mirror.storage.blobs.stat(d)).toBeUndefined();
  });

  it('shares one upstream fetch between concurrent misses', async () => {
    upstream.addManifest('team/app', '1.0', image());
    const all = await Promise.all(Array.from({ length: 10 }, () => raw(manifestUrl('1.0'))));
    for (const r of all) expect(r.status).toBe(200);
    expect(upstream.count('GET', '/manifests/')).toBe(1);
  });

  it('keeps tags of the same name apart per upstream key', async () => {
    const { tagKey } = await import('./index.js');
    const a = { upstream: { name: 'docker.io' }, repository: 'library/nginx' } as never;
    const b = { upstream: { name: 'ghcr.io' }, repository: 'library/nginx' } as never;
    expect(tagKey(a, 'latest')).not.toBe(tagKey(b, 'latest'));
  });
});

/**
 * Accept headers against a stored OCI index, and the status each must answer: the type listed
 * plainly (the fast path that skips negotiation), or negotiated: wildcards, qualities, exclusions.
 */
const ACCEPT_CASES: ReadonlyArray<readonly [accept: string, status: 200 | 404]> = [
  [DOCKER_MANIFEST, 404],
  [`${DOCKER_MANIFEST}, ${OCI_INDEX}`, 200],
  [OCI_INDEX, 200],
  ['application/*', 200],
  [`${DOCKER_MANIFEST}, */*;q=0.1`, 200],
  [`${OCI_INDEX};q=0.5, ${DOCKER_MANIFEST}`, 200],
  [`${OCI_INDEX};q=0`, 404],
  [`${OCI_INDEX};q=0, */*`, 404],
  [`${OCI_INDEX}, ${OCI_INDEX};q=0`, 200],
  [`${OCI_INDEX}x`, 404],
];

/** A HEAD as it comes off the wire: node's client would drop any body a HEAD answer carried. */
async function headOnTheWire(url: string, accept: string) {
  const { hostname, port, pathname } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.end(`HEAD ${pathname} HTTP/1.1\r\nHost: x\r\nAccept: ${accept}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('latin1');
  const [head = '', ...rest] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const header = (name: string) => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
  return { status: Number(statusLine.split(' ')[1]), header, after: rest.join('\r\n\r\n') };
}

/** A manifest is asked for by tag or by digest, and must negotiate the same either way. */
const BY = ['tag', 'digest'] as const;
type By = (typeof BY)[number];

describe('Accept negotiation', () => {
  let digest: string;
  beforeEach(() => {
    digest = upstream.addManifest('team/app', 'multi', Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_INDEX}","manifests":[]}`), OCI_INDEX);
  });
  const url = (by: By) => manifestUrl(by === 'tag' ? 'multi' : digest);
  /** One GET a case, `headers` besides its Accept. */
  async function answers(by: By, headers: Record<string, string> = {}) {
    const out = [];
    for (const [accept, status] of ACCEPT_CASES) out.push({ accept, status, res: await raw(url(by), { headers: { ...headers, Accept: accept } }) });
    return out;
  }
  /** The index's own type, or the JSON of the OCI error. */
  const typeFor = (status: number) => (status === 200 ? OCI_INDEX : 'application/json');

  it.each(BY)('answers MANIFEST_UNKNOWN when the Accept header excludes the stored type (GET by %s)', async (by) => {
    for (const { accept, status, res } of await answers(by)) {
      expect(res.status, accept).toBe(status);
      expect(res.headers['content-type'], accept).toBe(typeFor(status));
      if (status === 404) expect(errorCode(res.body), accept).toBe('MANIFEST_UNKNOWN');
    }
  });

  it.each(BY)('answers a HEAD by %s with the status, type and length of the GET, and no body', async (by) => {
    for (const { accept, status, res: get } of await answers(by)) {
      const head = await headOnTheWire(url(by), accept);
      expect(head.status, accept).toBe(status);
      expect(head.header('content-type'), accept).toBe(typeFor(status));
      expect(head.header('content-length'), accept).toBe(get.headers['content-length']);
      expect(head.after, accept).toBe('');
    }
  });

  it('answers a conditional GET whose Accept excludes the type with 404, not 304', async () => {
    // The type is checked before the ETag: a 304 would tell the client to use a manifest it
    // said it cannot take.
    for (const { accept, status, res } of await answers('tag', { 'If-None-Match': `"${digest}"` })) {
      expect(res.status, accept).toBe(status === 200 ? 304 : 404);
      if (status === 404) expect(errorCode(res.body), accept).toBe('MANIFEST_UNKNOWN');
    }
  });
});

describe('tags list', () => {
  it('pages with n and last and rewrites the Link header to the client name', async () => {
    for (const t of ['a', 'b', 'c', 'd']) upstream.addManifest('team/app', t, image(t.charCodeAt(0)));
    const res = await raw(`${mirror.url}/v2/team/app/tags/list?n=2`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ name: 'team/app', tags: ['a', 'b'] });
    expect(res.headers.link).toBe('</v2/team/app/tags/list?n=2&last=b>; rel="next"');
    const next = await raw(`${mirror.url}/v2/team/app/tags/list?n=2&last=b`);
    expect(JSON.parse(next.body.toString()).tags).toEqual(['c', 'd']);
  });
});
