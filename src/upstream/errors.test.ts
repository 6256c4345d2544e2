import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { upstreamError } from './index.js';
import type { UpstreamResponse } from './index.js';

function response(status: number, body: string | Readable = '', headers: UpstreamResponse['headers'] = {}): UpstreamResponse {
  return { status, headers, body: typeof body === 'string' ? Readable.from([Buffer.from(body)]) : body, url: 'https://up/x?sig=secret' };
}

const ociBody = (code: string, message: string) => JSON.stringify({ errors: [{ code, message, detail: { huge: 'x' } }] });

describe('upstreamError', () => {
  it('maps statuses to OCI codes', async () => {
    const cases: Array<[number, 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN', string, number]> = [
      [404, 'MANIFEST_UNKNOWN', 'MANIFEST_UNKNOWN', 404],
      [404, 'BLOB_UNKNOWN', 'BLOB_UNKNOWN', 404],
      [404, 'NAME_UNKNOWN', 'NAME_UNKNOWN', 404],
      [401, 'MANIFEST_UNKNOWN', 'UNAUTHORIZED', 401],
      [403, 'MANIFEST_UNKNOWN', 'DENIED', 403],
      [429, 'MANIFEST_UNKNOWN', 'TOOMANYREQUESTS', 429],
      [503, 'MANIFEST_UNKNOWN', 'UNAVAILABLE', 503],
      [500, 'MANIFEST_UNKNOWN', 'UNAVAILABLE', 502],
      [502, 'MANIFEST_UNKNOWN', 'UNAVAILABLE', 502],
      [400, 'MANIFEST_UNKNOWN', 'UNAVAILABLE', 502],
      [200, 'MANIFEST_UNKNOWN', 'UNAVAILABLE', 502],
      [302, 'MANIFEST_UNKNOWN', 'UNAVAILABLE', 502],
    ];
    for (const [status, notFound, code, ours] of cases) {
      const err = await upstreamError(response(status), notFound);
      expect([status, err.code, err.status]).toEqual([status, code, ours]);
      expect(err.message).not.toContain('secret');
    }
  });

  it('carries Retry-After on 429 and 503, only when it is well-formed', async () => {
    expect((await upstreamError(response(429, '', { 'retry-after': '30' }), 'BLOB_UNKNOWN')).headers).toEqual({ 'Retry-After': '30' });
    const date = 'Wed, 21 Oct 2015 07:28:00 GMT';
    expect((await upstreamError(response(503, '', { 'retry-after': date }), 'BLOB_UNKNOWN')).headers).toEqual({ 'Retry-After': date });
    expect((await upstreamError(response(429, '', { 'retry-after': '30\r\nX-Evil: 1' }), 'BLOB_UNKNOWN')).headers).toEqual({});
    expect((await upstreamError(response(429), 'BLOB_UNKNOWN')).headers).toEqual({});
  });

  it('keeps a valid OCI error body as detail, sanitized and capped', async () => {
    const err = await upstreamError(response(404, ociBody('MANIFEST_UNKNOWN', `no such\r\nmanifest\u0000 ${'z'.repeat(1000)}`)), 'MANIFEST_UNKNOWN');
    const detail = err.detail as { status: number; errors: Array<{ code: string; message: string }> };
    expect(detail.status).toBe(404);
    expect(detail.errors).toHaveLength(1);
    expect(detail.errors[0]!.code).toBe('MANIFEST_UNKNOWN');
    expect(detail.errors[0]!.message.startsWith('no such manifest z')).toBe(true);
    expect(Array.from(detail.errors[0]!.message)).toHaveLength(256);
    expect(err.toJSON().errors[0]!.code).toBe('MANIFEST_UNKNOWN');
  });

  it('drops bodies that are not OCI errors', async () => {
    for (const body of ['<html>502 Bad Gateway</html>', '{"errors":"nope"}', '{"errors":[{"code":"lower"}]}', '{"errors":[]}', 'null', '']) {
      expect((await upstreamError(response(500, body), 'BLOB_UNKNOWN')).detail).toBeUndefined();
    }
  });

  it('reads no more than the cap and consumes the body', async () => {
    let pulled = 0;
    const endless = new Readable({
      read() {
        pulled++;
        this.push(Buffer.alloc(16 * 1024, 0x20));
      },
    });
    const err = await upstreamError(response(500, endless), 'BLOB_UNKNOWN');
    expect(err.detail).toBeUndefined();
    expect(pulled).toBeLessThan(10);
    expect(endless.destroyed).toBe(true);
  });

  it('survives a body that errors', async () => {
    const broken = new Readable({
      read() {
        this.destroy(new Error('reset'));
      },
    });
    const err = await upstreamError(response(502, broken), 'BLOB_UNKNOWN');
    expect(err.code).toBe('UNAVAILABLE');
  });
});
