/** The relay's shared secret: only the right one opens it, and no wrong one is told apart by its length. */
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Fills } from '../../src/fill/index.js';
import { digestOf } from '../../src/digest.js';
import { FILLS_PATH, REPLICA_SECRET_HEADER } from '../../src/replication/relay.js';
import type { BlobStore } from '../../src/storage.js';
import { raw } from '../../test/helpers/http.js';
import { fillRelay } from './index.js';

// Watched, not replaced: the relay must reach the constant-time comparison whatever it is sent.
vi.mock('node:crypto', async (original) => {
  const real = await original<typeof import('node:crypto')>();
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) };
});

const SECRET = 'replica-secret-0123456789';
const BLOB = Buffer.from('a stored blob');
const DIGEST = digestOf(BLOB);

let server: Server;
let url: string;

beforeAll(async () => {
  const blobs = {
    stat: async (d: string) => (d === DIGEST ? { size: BLOB.length } : undefined),
    read: async (d: string) => (d === DIGEST ? Readable.from([BLOB]) : undefined),
  } as unknown as BlobStore;
  const fills = { get: () => undefined } as unknown as Fills;
  const app = new Koa();
  app.use(fillRelay({ fills, blobs, secret: SECRET }));
  server = createServer(app.callback()).listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${FILLS_PATH}${DIGEST}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('fill relay secret', () => {
  it('answers the right secret with the blob', async () => {
    const res = await raw(url, { headers: { [REPLICA_SECRET_HEADER]: SECRET } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(BLOB);
  });

  it.each([
    ['the same length', `${SECRET.slice(0, -1)}x`],
    ['a shorter one', SECRET.slice(0, 8)],
    ['a longer one', `${SECRET}-and-more`],
    ['none', undefined],
  ])('refuses a wrong secret of %s, through the constant-time comparison of equal-length digests', async (_what, given) => {
    const compare = vi.mocked(crypto.timingSafeEqual);
    compare.mockClear();
    const res = await raw(url, { headers: given === undefined ? {} : { [REPLICA_SECRET_HEADER]: given } });
    expect(res.status).toBe(401);
    expect(res.body.includes(BLOB)).toBe(false);
    expect(compare).toHaveBeenCalledTimes(1);
    const [a, b] = compare.mock.calls[0]! as [Buffer, Buffer];
    expect([a.length, b.length]).toEqual([32, 32]);
  });
});
