/** The coordinated source over an in-memory lease: who fetches, relaying, resuming a broken relay, and a lease that is down. */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { coordinatedSource, type FillRelay } from './coordinated.js';
import type { FillSource } from './fill.js';
import type { FillLease, LeaseClaim } from './lease.js';

const D = `sha256:${'b'.repeat(64)}`;
const data = Buffer.from('0123456789abcdefghij');

/** One holder at a time, in memory; `holder` set from outside stands for another replica. */
function memoryLease(): FillLease & { holder: string | undefined; claims: number } {
  return {
    holder: undefined,
    claims: 0,
    ttlMs: 50,
    async claim(): Promise<LeaseClaim> {
      this.claims++;
      if (this.holder) return { owner: false, holder: this.holder, id: this.holder };
      this.holder = 'self';
      return { owner: true, release: async () => void (this.holder = undefined) };
    },
    async current() {
      return this.holder;
    },
    async close() {},
  };
}

const upstreamCounting = () => {
  const source = Object.assign(
    (async () => {
      source.calls++;
      return { size: data.length, body: Readable.from([data.subarray(0, 7), data.subarray(7)]) };
    }) as FillSource,
    { calls: 0 },
  );
  return source;
};

async function bytes(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('coordinatedSource', () => {
  it('fetches from the upstream when it wins the lease, and releases it', async () => {
    const lease = memoryLease();
    const upstream = upstreamCounting();
    const { source, release } = coordinatedSource(D, upstream, { lease, relay: async () => undefined });
    const res = await source(new AbortController().signal);
    expect((await bytes(res.body)).equals(data)).toBe(true);
    expect(res.relayed).toBeUndefined();
    await release();
    expect(lease.holder).toBeUndefined();
  });

  it('relays from the holder, and resumes from the upstream where the relay broke when the holder dies', async () => {
    const lease = memoryLease();
    lease.holder = 'http://other:1';
    const upstream = upstreamCounting();
    const relay: FillRelay = async (holder) => {
      expect(holder).toBe('http://other:1');
      // Five bytes, then the connection breaks; the holder's lease lapses.
      const body = new Readable({ read() {} });
      body.push(data.subarray(0, 5));
      setTimeout(() => {
        lease.holder = undefined;
        body.destroy(new Error('socket hang up'));
      }, 20);
      return { size: data.length, body };
    };
    const { source, release } = coordinatedSource(D, upstream, { lease, relay });
    const res = await source(new AbortController().signal);
    expect(res.relayed).toBe(true);
    expect((await bytes(res.body)).equals(data)).toBe(true);
    expect(upstream.calls).toBe(1);
    expect(lease.holder).toBe('self');
    await release();
  });

  it('waits out a holder that does not answer, then takes the lease over', async () => {
    const lease = memoryLease();
    lease.holder = 'http://dead:1';
    setTimeout(() => (lease.holder = undefined), 100);
    const upstream = upstreamCounting();
    const { source } = coordinatedSource(D, upstream, { lease, relay: async () => Promise.reject(new Error('ECONNREFUSED')) });
    const res = await source(new AbortController().signal);
    expect((await bytes(res.body)).equals(data)).toBe(true);
    expect(upstream.calls).toBe(1);
  });

  it('fetches on its own when the lease cannot be asked', async () => {
    const lease = { ...memoryLease(), claim: () => Promise.reject(new Error('redis down')) };
    const upstream = upstreamCounting();
    const res = await coordinatedSource(D, upstream, { lease, relay: async () => undefined }).source(new AbortController().signal);
    expect((await bytes(res.body)).equals(data)).toBe(true);
  });
});
