/**
 * Health over a faked clock: how often a URL out of rotation is tried again, with and without
 * another URL to serve meanwhile. No test here waits for real time.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { OciError } from '../errors.js';
import { createFailoverUpstream } from './failover.js';
import type { Upstream, UpstreamOptions, UpstreamResponse } from './types.js';

type Mode = 'up' | 'down' | 'hang';

/** URLs whose behaviour the test sets, counting the requests each one gets. */
function fakeUrls() {
  const modes = new Map<string, Mode>();
  const calls = new Map<string, number>();
  const hanging: Array<() => void> = [];
  const create = (o: UpstreamOptions): Upstream => ({
    name: o.name,
    url: o.url,
    close: async () => {},
    request: async (): Promise<UpstreamResponse> => {
      calls.set(o.url, (calls.get(o.url) ?? 0) + 1);
      const mode = modes.get(o.url) ?? 'up';
      // A hanging URL fails when the test says its timeout is over.
      if (mode === 'hang') await new Promise<void>((resolve) => hanging.push(resolve));
      if (mode !== 'up') throw new OciError('UNAVAILABLE', `${o.url}: connection refused`, { status: 503 });
      return { status: 200, headers: {}, body: Readable.from([]), url: o.url };
    },
  });
  return { modes, calls, create, timeOut: () => hanging.splice(0).forEach((r) => r()) };
}

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const get = { method: 'GET' as const, repository: 'team/app', path: '/v2/team/app/manifests/1' };
const outcome = (p: Promise<UpstreamResponse>) => p.then((r) => r.status, (e: OciError) => e.status);

describe('failover health', () => {
  it('probes a single URL again a probeInterval after its last failure, not a failTimeout', async () => {
    const { modes, calls, create } = fakeUrls();
    const c = clock();
    const up = createFailoverUpstream({ name: 'r.test', urls: ['http://a'], create, health: { failTimeout: 30_000, probeInterval: 1_000, now: c.now } });
    modes.set('http://a', 'down');
    expect(await outcome(up.request(get))).toBe(503);
    c.advance(500);
    const refused = await up.request(get).catch((e: OciError) => e);
    expect(refused).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining('next try in 1s') });
    expect(calls.get('http://a')).toBe(1);
    c.advance(500);
    expect(await outcome(up.request(get))).toBe(503); // the probe, still down
    expect(calls.get('http://a')).toBe(2);
    modes.set('http://a', 'up');
    c.advance(999);
    expect(await outcome(up.request(get))).toBe(503); // not yet
    c.advance(1);
    expect(await outcome(up.request(get))).toBe(200); // back within a second of its return
    expect(await outcome(up.request(get))).toBe(200);
    expect(calls.get('http://a')).toBe(4);
  });

  it('lets one probe at a time reach a hanging URL: one timeout per probe, not per request', async () => {
    const { modes, calls, create, timeOut } = fakeUrls();
    const c = clock();
    const up = createFailoverUpstream({ name: 'r.test', urls: ['http://a'], create, health: { probeInterval: 1_000, now: c.now } });
    modes.set('http://a', 'down');
    await outcome(up.request(get));
    modes.set('http://a', 'hang');
    c.advance(1_000);
    const probe = outcome(up.request(get));
    for (let i = 0; i < 20; i++) {
      c.advance(1_000);
      expect(await outcome(up.request(get))).toBe(503); // answered at once while the probe hangs
    }
    expect(up.health()[0]).toMatchObject({ state: 'probing' });
    expect(calls.get('http://a')).toBe(2);
    timeOut();
    expect(await probe).toBe(503);
    c.advance(999);
    expect(await outcome(up.request(get))).toBe(503);
    expect(calls.get('http://a')).toBe(2);
    c.advance(1);
    const next = outcome(up.request(get));
    expect(calls.get('http://a')).toBe(3);
    timeOut();
    await next;
  });

  it('keeps a failed URL out for failTimeout while another URL serves', async () => {
    const { modes, calls, create } = fakeUrls();
    const c = clock();
    const up = createFailoverUpstream({ name: 'r.test', urls: ['http://a', 'http://b'], create, health: { failTimeout: 30_000, probeInterval: 1_000, now: c.now } });
    modes.set('http://a', 'down');
    expect(await outcome(up.request(get))).toBe(200);
    for (let i = 0; i < 29; i++) {
      c.advance(1_000);
      expect(await outcome(up.request(get))).toBe(200);
    }
    expect([calls.get('http://a'), calls.get('http://b')]).toEqual([1, 30]);
    c.advance(1_000);
    await up.request(get);
    expect(calls.get('http://a')).toBe(2); // the failTimeout probe
  });

  it('probes every URL as a last resort once all of them are down', async () => {
    const { modes, calls, create } = fakeUrls();
    const c = clock();
    const up = createFailoverUpstream({ name: 'r.test', urls: ['http://a', 'http://b'], create, health: { failTimeout: 30_000, probeInterval: 1_000, now: c.now } });
    modes.set('http://a', 'down');
    modes.set('http://b', 'down');
    expect(await outcome(up.request(get))).toBe(503);
    expect(up.health().map((h) => h.retryAt)).toEqual([c.now() + 1_000, c.now() + 1_000]);
    modes.set('http://b', 'up');
    c.advance(1_000);
    expect(await outcome(up.request(get))).toBe(200);
    expect([calls.get('http://a'), calls.get('http://b')]).toEqual([2, 2]);
  });
});
