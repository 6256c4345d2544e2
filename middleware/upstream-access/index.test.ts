import { Readable } from 'node:stream';
import type { ParameterizedContext } from 'koa';
import { describe, expect, it } from 'vitest';
import { OciError } from '../../src/errors.js';
import { parseDigest } from '../../src/reference.js';
import type { Upstream, UpstreamResponse } from '../../src/upstream/types.js';
import { upstreamAccess } from './index.js';

const digest = parseDigest(`sha256:${'b'.repeat(64)}`);

/** A request for a blob of a private upstream, with Basic credentials, as far as upstreamAccess sees it. */
function context(request: Upstream['request']): ParameterizedContext {
  const upstream = { name: 'private.test', url: 'http://127.0.0.1:1', request, close: async () => {} } as Upstream;
  const headers: Record<string, string> = { authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` };
  return {
    state: { oci: { kind: 'blob', name: 'team/app', digest }, target: { upstream, repository: 'team/app' } },
    get: (name: string) => headers[name.toLowerCase()] ?? '',
  } as unknown as ParameterizedContext;
}

const access = upstreamAccess({ policy: () => ({ private: true, forwardCredentials: false }) });
const run = (ctx: ParameterizedContext) => access(ctx, async () => {}).then(() => undefined, (e: unknown) => e);

describe('upstreamAccess on a rate-limited upstream', () => {
  it("passes the upstream's back-off on as 429 TOOMANYREQUESTS with its wait, not as 503", async () => {
    const err = await run(
      context(async () => {
        throw new OciError('TOOMANYREQUESTS', 'upstream private.test rate limit reached; retry in 12s', { status: 429, headers: { 'Retry-After': '12' } });
      }),
    );
    expect(err).toMatchObject({ code: 'TOOMANYREQUESTS', status: 429, headers: { 'Retry-After': '12' } });
  });

  it('answers an upstream 429 to its access check with 429 and its Retry-After', async () => {
    const res: UpstreamResponse = { status: 429, headers: { 'retry-after': '30' }, body: Readable.from([]), url: 'http://127.0.0.1:1/' };
    const err = await run(context(async () => res));
    expect(err).toMatchObject({ code: 'TOOMANYREQUESTS', status: 429, headers: { 'Retry-After': '30' } });
  });

  it('still fails closed, 503, when the upstream cannot be asked at all', async () => {
    const err = await run(
      context(async () => {
        throw new OciError('UNAVAILABLE', 'upstream private.test unreachable');
      }),
    );
    expect(err).toMatchObject({ code: 'UNAVAILABLE', status: 503 });
  });
});
