import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';

let upstream: FakeUpstream;
let mirror: TestMirror;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  mirror = await startTestMirror(upstream.url);
});
afterAll(async () => {
  await mirror.dispose();
  await upstream.close();
});

async function oci(path: string, method = 'GET') {
  const res = await raw(`${mirror.url}${path}`, { method });
  const text = res.body.toString();
  return { status: res.status, headers: res.headers, code: text ? (JSON.parse(text) as { errors: Array<{ code: string }> }).errors[0]?.code : undefined };
}

const D = `sha256:${'a'.repeat(64)}`;

describe('the /v2/ API surface', () => {
  it('answers the base endpoint with the API version header', async () => {
    const res = await raw(`${mirror.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(res.body.toString()).toBe('{}');
  });

  it('passes other paths on to the rest of the application', async () => {
    const res = await raw(`${mirror.url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers['docker-distribution-api-version']).toBeUndefined();
  });

  it.each([
    ['/v2/../etc/passwd/manifests/latest', 'NAME_INVALID'],
    ['/v2/team/%2e%2e/app/manifests/latest', 'NAME_INVALID'],
    ['/v2/team%2Fapp/manifests/latest', 'NAME_INVALID'],
    ['/v2/Team/App/manifests/latest', 'NAME_INVALID'],
    ['/v2/team//app/manifests/latest', 'NAME_INVALID'],
    ['/v2/-team/manifests/latest', 'NAME_INVALID'],
    [`/v2/${'a'.repeat(256)}/manifests/latest`, 'NAME_INVALID'],
    ['/v2/team/app/manifests/-bad', 'TAG_INVALID'],
    [`/v2/team/app/manifests/${'t'.repeat(129)}`, 'TAG_INVALID'],
    ['/v2/team/app/manifests/sha256:abc', 'DIGEST_INVALID'],
    ['/v2/team/app/manifests/md5:d41d8cd98f00b204e9800998ecf8427e', 'DIGEST_INVALID'],
    [`/v2/team/app/blobs/sha256:${'A'.repeat(64)}`, 'DIGEST_INVALID'],
    [`/v2/team/app/blobs/sha512:${'a'.repeat(64)}`, 'DIGEST_INVALID'],
    ['/v2/team/app/blobs/..%2F..%2Fetc', 'DIGEST_INVALID'],
    ['/v2/team/app/tags/list?n=99999999999', 'PAGINATION_NUMBER_INVALID'],
    ['/v2/team/app/tags/list?n=-1', 'PAGINATION_NUMBER_INVALID'],
    ['/v2/team/app/tags/list?n=abc', 'PAGINATION_NUMBER_INVALID'],
    ['/v2/team/app/tags/list?last=%2F%2F', 'TAG_INVALID'],
  ])('refuses %s with %s', async (path, code) => {
    const res = await oci(path);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.code).toBe(code);
    expect(res.headers['content-type']).toContain('application/json');
  });

  it('never contacts the upstream for refused input', async () => {
    const before = upstream.requests.length;
    await oci('/v2/team/%2e%2e/manifests/latest');
    await oci('/v2/team/app/blobs/sha256:zz');
    expect(upstream.requests.length).toBe(before);
  });

  it('accepts sha512 digests and nested names up to the limits', async () => {
    const res = await oci(`/v2/a/b/c/d/e/blobs/sha512:${'b'.repeat(128)}`, 'HEAD');
    expect(res.status).toBe(404); // valid, just unknown upstream
  });

  it.each([
    ['PUT', `/v2/team/app/manifests/latest`],
    ['DELETE', `/v2/team/app/manifests/${D}`],
    ['DELETE', `/v2/team/app/blobs/${D}`],
    ['POST', '/v2/team/app/blobs/uploads/'],
    ['PATCH', '/v2/team/app/blobs/uploads/abc'],
    ['PUT', '/v2/team/app/blobs/uploads/abc?digest=' + D],
    ['GET', '/v2/team/app/blobs/uploads/abc'],
    ['GET', '/v2/_catalog'],
  ])('answers %s %s with 405 UNSUPPORTED', async (method, path) => {
    const res = await oci(path, method);
    expect(res.status).toBe(405);
    expect(res.code).toBe('UNSUPPORTED');
  });

  it('answers unknown /v2/ endpoints with an OCI 404', async () => {
    const res = await oci('/v2/team/app/nothing-here');
    expect(res.status).toBe(404);
    expect(res.code).toBe('NAME_UNKNOWN');
  });
});

/** Sends `request` as is and reads until the server closes the connection (bounded). */
function exchange(request: string): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(mirror.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString(), closed: false });
    }, 10_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString(), closed: true });
    });
    socket.end(request);
  });
}

function parse(text: string) {
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

// Requests Node's HTTP parser refuses before koa sees them, sent over a raw socket (a client
// library would not send them).
describe('requests the HTTP parser refuses', () => {
  it.each([
    ['a malformed request line', 'GET /v2/ HTTP/1.1 nonsense\r\nHost: x\r\n\r\n', 400],
    ['a header without a colon', 'GET /v2/ HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n', 400],
    ['headers past the size limit', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
  ])('answer %s with the OCI envelope, close the connection, and the server serves on', async (_what, request, status) => {
    const answer = await exchange(request);
    expect(answer.closed).toBe(true);
    const res = parse(answer.text);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers.connection).toBe('close');
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
    const errors = (JSON.parse(res.body) as { errors: Array<{ code: string; message: string }> }).errors;
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('UNKNOWN');
    expect(errors[0]!.message).toMatch(/\w/);

    const after = await raw(`${mirror.url}/v2/`);
    expect(after.status).toBe(200);
  });
});
