/**
 * A fill's digest, computed beside the main thread instead of on it. Hashing is the largest
 * single cost of a cold pull (about a third of the main thread's busy time, by the profile), and
 * node's hashes are synchronous: on the main thread they delay every other client. A worker
 * thread reads what the fill has written back from its spool file (the page cache, since the
 * bytes were written a moment ago) and hashes it there; the fill only says how far it has written.
 *
 * Worker threads share the process's file descriptors, so the worker reads the fill's own open
 * spool, unlinked or not. The price is one rule: the fill must not close that descriptor while the
 * worker may still read it (`close()` resolves once it no longer will), or a reused descriptor
 * number could feed another file's bytes into the hash.
 */
import { Worker } from 'node:worker_threads';
import { OciError } from '../errors.js';
import type { Digest } from '../reference.js';

/** The worker's side, plain CommonJS: it runs from a string, the same under tsx, vitest and dist/. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { readSync } = require('node:fs');
const jobs = new Map();
const buffer = Buffer.allocUnsafe(${1024 * 1024});
// One message hashes at most this much, so that one large fill cannot starve the others.
const SLICE = ${8 * 1024 * 1024};
parentPort.on('message', (m) => {
  if (m.type === 'update') {
    let job = jobs.get(m.id);
    if (!job) jobs.set(m.id, (job = { hash: createHash(m.algorithm), position: 0 }));
    try {
      const stop = Math.min(m.upto, job.position + SLICE);
      while (job.position < stop) {
        const n = readSync(m.fd, buffer, 0, Math.min(buffer.length, stop - job.position), job.position);
        if (n === 0) throw new Error('the spool file ended at ' + job.position + ' bytes, before ' + stop);
        job.hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
        job.position += n;
      }
      parentPort.postMessage({ type: 'hashed', id: m.id, position: job.position });
    } catch (e) {
      jobs.delete(m.id);
      parentPort.postMessage({ type: 'failed', id: m.id, message: String(e && e.message || e) });
    }
  } else if (m.type === 'digest') {
    const job = jobs.get(m.id);
    jobs.delete(m.id);
    parentPort.postMessage({ type: 'digest', id: m.id, hex: (job ? job.hash : createHash(m.algorithm)).digest('hex') });
  } else if (m.type === 'drop') {
    jobs.delete(m.id);
    parentPort.postMessage({ type: 'dropped', id: m.id });
  }
});
`;

type Reply =
  | { type: 'hashed'; id: number; position: number }
  | { type: 'digest'; id: number; hex: string }
  | { type: 'dropped'; id: number }
  | { type: 'failed'; id: number; message: string };

/** How one job hears from the worker. */
interface Listener {
  reply(message: Reply): void;
  /** The worker died: nothing more will come. */
  lost(error: Error): void;
}

/**
 * One worker thread for every fill of the process, started with the first fill and ended once
 * no fill has needed it for IDLE_MS, so that a mirror at rest costs no thread (a worker is about
 * 10 MB of RSS). Shared by design: hashing outruns a loopback link, and fills in parallel
 * interleave by message (see SLICE).
 */
class HashThread {
  private worker: Worker | undefined;
  private readonly listeners = new Map<number, Listener>();
  private nextId = 1;
  private idle: NodeJS.Timeout | undefined;

  register(listener: Listener): number {
    const id = this.nextId++;
    this.listeners.set(id, listener);
    clearTimeout(this.idle);
    this.ensure().ref();
    return id;
  }

  unregister(id: number): void {
    this.listeners.delete(id);
    if (this.listeners.size > 0) return;
    // An idle worker must not keep the process alive, and goes after a while.
    this.worker?.unref();
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.retire(), IDLE_MS).unref();
  }

  /** Whether a worker thread is running now. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  post(message: Record<string, unknown>): void {
    this.ensure().postMessage(message);
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (m: Reply) => this.listeners.get(m.id)?.reply(m));
    const lose = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      const listeners = [...this.listeners.values()];
      this.listeners.clear();
      for (const l of listeners) l.lost(error);
    };
    worker.on('error', lose);
    worker.on('exit', (code) => lose(new Error(`the hash worker exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  private retire(): void {
    const worker = this.worker;
    if (!worker || this.listeners.size > 0) return;
    this.worker = undefined; // before it exits: its 'exit' is then nobody's loss
    void worker.terminate();
  }
}

const thread = new HashThread();

/** The least new data worth a message to the worker. */
const STEP = 1024 * 1024;
/** How long the worker outlives the last fill that needed it. */
const IDLE_MS = 30_000;

/** Whether the hash worker thread is running (for tests and the curious). */
export const hashThreadRunning = (): boolean => thread.running;

/**
 * The digest of one spool file, computed in the worker as the fill writes. Calls come from the
 * fill in order: `written` as batches land in the file, then either `digest` once, or `close`.
 */
export class SpoolHash {
  private readonly id: number;
  private written_ = 0;
  private hashed = 0;
  /** A message is with the worker: the next `written` waits for its answer, then catches up in one. */
  private inFlight = false;
  private error: Error | undefined;
  private waiting: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private pendingDigest: { resolve: (hex: string) => void; reject: (e: Error) => void } | undefined;
  private dropped: (() => void) | undefined;
  private closed = false;
  /** digest() was called: everything written is due, however little. */
  private finishing = false;

  constructor(
    private readonly fd: number,
    private readonly digestOf: Digest,
  ) {
    this.id = thread.register({ reply: (m) => this.onReply(m), lost: (e) => this.fail(e) });
  }

  /** Bytes [0, end) are in the spool file. */
  written(end: number): void {
    this.written_ = end;
    this.pump();
  }

  /** The hex digest of the first `size` bytes, once they are all hashed; the worker is done with the file after it. */
  async digest(size: number): Promise<string> {
    this.written_ = Math.max(this.written_, size);
    this.finishing = true;
    this.pump();
    while (this.hashed < size) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve, reject) => (this.waiting = { resolve, reject }));
    }
    const hex = await new Promise<string>((resolve, reject) => {
      this.pendingDigest = { resolve, reject };
      thread.post({ type: 'digest', id: this.id, algorithm: this.digestOf.algorithm });
    });
    this.finish();
    return hex;
  }

  /** Stops hashing; resolves once the worker will no longer read the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.error) return this.finish();
    await new Promise<void>((resolve) => {
      this.dropped = resolve;
      thread.post({ type: 'drop', id: this.id });
    });
    this.finish();
  }

  private pump(): void {
    // A message costs the main thread about what hashing 10 KB would: one per STEP written at
    // most, until digest() wants the rest.
    const due = this.finishing ? this.hashed < this.written_ : this.written_ - this.hashed >= STEP;
    if (this.inFlight || this.error || this.closed || !due) return;
    this.inFlight = true;
    thread.post({ type: 'update', id: this.id, fd: this.fd, upto: this.written_, algorithm: this.digestOf.algorithm });
  }

  private onReply(m: Reply): void {
    switch (m.type) {
      case 'hashed':
        this.inFlight = false;
        this.hashed = m.position;
        this.wakeWaiter();
        this.pump();
        return;
      case 'digest':
        this.pendingDigest?.resolve(m.hex);
        return;
      case 'dropped':
        this.dropped?.();
        return;
      case 'failed':
        this.inFlight = false;
        this.fail(new OciError('UNAVAILABLE', `hashing the spool failed: ${m.message}`));
    }
  }

  private fail(error: Error): void {
    this.error ??= error;
    this.waiting?.reject(this.error);
    this.waiting = undefined;
    this.pendingDigest?.reject(this.error);
    this.pendingDigest = undefined;
    // A dead worker reads nothing any more: whoever waits for the drop may go on.
    this.dropped?.();
  }

  private wakeWaiter(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve();
  }

  private finish(): void {
    this.closed = true;
    thread.unregister(this.id);
  }
}
