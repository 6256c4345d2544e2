/**
 * The primary's in-memory lease as the workers use it, over an in-process channel pair that
 * clones and delivers messages asynchronously as the cluster's IPC does: the same cases as the
 * Redis lease's test (exclusive, renewed while held, expiring when not, released only by its
 * holder), plus what only the primary can do: free a dead worker's claims at once.
 */
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { FillLease } from '../fill/lease.js';
import { answerLeases, ipcFillLease, leaseClient, type Channel } from './ipc.js';
import { LeaseTable } from './lease-table.js';

const D = `sha256:${'a'.repeat(64)}`;

/** Two ends of one channel; `up` false once the far end is gone (sends then fail, as the cluster's do). */
function channelPair(): { worker: Channel; primary: Channel; cut(): void } {
  const toWorker = new EventEmitter();
  const toPrimary = new EventEmitter();
  let up = true;
  const end = (inbox: EventEmitter, outbox: EventEmitter): Channel => ({
    send(message, callback) {
      const copy = structuredClone(message);
      queueMicrotask(() => {
        if (!up) return callback(new Error('channel closed'));
        outbox.emit('message', copy);
        callback(null);
      });
    },
    on: (event, listener) => inbox.on(event, listener),
    off: (event, listener) => inbox.off(event, listener),
  });
  return { worker: end(toWorker, toPrimary), primary: end(toPrimary, toWorker), cut: () => void (up = false) };
}

describe('the primary\'s in-memory lease, over IPC', () => {
  let table: LeaseTable;
  const hangUps: Array<() => void> = [];
  const leases: FillLease[] = [];

  /** Worker `owner`'s lease, advertising `holder`. */
  const workerLease = (owner: number, holder: string, options: { ttlMs?: number; renewMs?: number } = {}) => {
    const pair = channelPair();
    hangUps.push(answerLeases(table, pair.primary, owner));
    const lease = ipcFillLease(leaseClient(pair.worker), { holder, kind: 'fill-lease', ttlMs: options.ttlMs ?? 10_000, renewMs: options.renewMs ?? 3_000 });
    leases.push(lease);
    return { lease, cut: pair.cut };
  };

  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(async () => {
    await Promise.all(leases.splice(0).map((l) => l.close()));
    for (const h of hangUps.splice(0)) h();
    vi.useRealTimers();
  });

  it('gives a digest to one worker, tells the others who holds it, and frees it on release', async () => {
    table = new LeaseTable(10_000);
    const { lease: x } = workerLease(1, 'http://127.0.0.1:1001');
    const { lease: y } = workerLease(2, 'http://127.0.0.1:1002');
    const won = await x.claim(D);
    expect(won.owner).toBe(true);
    const lost = await y.claim(D);
    expect(lost).toMatchObject({ owner: false, holder: 'http://127.0.0.1:1001' });
    expect(await y.current(D)).toBe(lost.owner ? 'unexpected' : lost.id);
    if (won.owner) await won.release();
    expect(await y.current(D)).toBeUndefined();
    expect((await y.claim(D)).owner).toBe(true);
  });

  it('renews while held', async () => {
    table = new LeaseTable(1_000);
    const { lease: x } = workerLease(1, 'http://x', { ttlMs: 1_000, renewMs: 100 });
    const { lease: y } = workerLease(2, 'http://y', { ttlMs: 1_000, renewMs: 100 });
    expect((await x.claim(D)).owner).toBe(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect((await y.claim(D)).owner).toBe(false);
  });

  it('expires when not renewed, and the old holder\'s release leaves the new claim alone', async () => {
    table = new LeaseTable(300);
    const { lease: x } = workerLease(1, 'http://x', { ttlMs: 300, renewMs: 60_000 });
    const { lease: y } = workerLease(2, 'http://y', { ttlMs: 300, renewMs: 60_000 });
    const old = await x.claim(D);
    await vi.advanceTimersByTimeAsync(450);
    expect((await y.claim(D)).owner).toBe(true);
    if (old.owner) await old.release();
    expect(await x.current(D)).toMatch(/ http:\/\/y$/);
  });

  it('frees every claim of a worker that died at once, without waiting out the lifetime', async () => {
    table = new LeaseTable(10_000);
    const { lease: x } = workerLease(1, 'http://x');
    const { lease: y } = workerLease(2, 'http://y');
    expect((await x.claim(D)).owner).toBe(true);
    expect((await x.claim(`sha256:${'b'.repeat(64)}`)).owner).toBe(true);
    expect(table.releaseOwner(1)).toBe(2);
    expect((await y.claim(D)).owner).toBe(true);
  });

  it('keeps no expired claim for good, and keeps a live one', async () => {
    table = new LeaseTable(1_000);
    for (let i = 0; i < 100; i++) table.claim(`fill-lease:${i}`, 'http://x', 1);
    await vi.advanceTimersByTimeAsync(500);
    table.claim('fill-lease:live', 'http://x', 1);
    await vi.advanceTimersByTimeAsync(600);
    table.claim('fill-lease:last', 'http://x', 1);
    expect(table.size).toBe(2);
  });

  it('fails a request the primary does not answer, in bounded time', async () => {
    table = new LeaseTable(10_000);
    const { lease, cut } = workerLease(1, 'http://x');
    cut();
    await expect(lease.claim(D)).rejects.toThrow(/channel closed/);
    const silent: Channel = { send: () => true, on: () => undefined, off: () => undefined };
    const unanswered = ipcFillLease(leaseClient(silent, 5_000), { holder: 'http://x', kind: 'fill-lease', ttlMs: 10_000, renewMs: 3_000 }).claim(D);
    const failed = expect(unanswered).rejects.toThrow(/did not answer a lease claim within 5000 ms/);
    await vi.advanceTimersByTimeAsync(5_000);
    await failed;
  });
});
