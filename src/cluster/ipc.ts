/**
 * What the primary and its workers say to each other over the cluster's IPC channel: the
 * config a worker serves, that it listens, and the lease requests the primary answers from
 * its LeaseTable. A worker's leases are FillLeases like the Redis ones, so the fills and the
 * eviction turns use them as they use the replicas'.
 */
import type { MirrorConfig } from '../config.js';
import type { FillLease, LeaseClaim } from '../fill/lease.js';
import { heldClaim } from '../replication/held-claim.js';
import type { LeaseTable, TableClaim } from './lease-table.js';

/** The cluster's `process`/`Worker` as far as this module needs it (an EventEmitter pair in tests). */
export interface Channel {
  send(message: unknown, callback: (err: Error | null) => void): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

export const HELLO = 'oci-mirror:hello';
export const START = 'oci-mirror:start';
export const LISTENING = 'oci-mirror:listening';
const LEASE = 'oci-mirror:lease';
const LEASE_REPLY = 'oci-mirror:lease-reply';

/**
 * Primary → worker, once, in answer to the worker's HELLO: a worker parses no config of its own.
 * Not sent at the fork: a message that arrives before the worker listens for it is lost.
 */
export interface StartMessage {
  type: typeof START;
  config: MirrorConfig;
  /** Guards the siblings' relay (`/_mirror/fills/`); made up by the primary for this run. */
  secret: string;
}

/** Worker → primary, once it serves: start-up is over when every worker has said so. */
export interface ListeningMessage {
  type: typeof LISTENING;
  /** Where the worker's fills can be relayed from. */
  relay: string;
}

type LeaseOp = { op: 'claim'; key: string; holder: string } | { op: 'renew' | 'release'; key: string; claim: string } | { op: 'current'; key: string };
type LeaseRequest = LeaseOp & { type: typeof LEASE; id: number };
type LeaseResult = TableClaim | boolean | string | null;
interface LeaseReply {
  type: typeof LEASE_REPLY;
  id: number;
  result: LeaseResult;
}

export function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

/** Answers one worker's lease requests from `table`, telling `onClaim` of each claim; returns the hang-up. */
export function answerLeases(table: LeaseTable, channel: Channel, owner: number, onClaim?: (key: string, claim: TableClaim) => void): () => void {
  const onMessage = (message: unknown) => {
    if (!isMessage<LeaseRequest>(message, LEASE)) return;
    const result = ((): LeaseResult => {
      switch (message.op) {
        case 'claim': {
          const claim = table.claim(message.key, message.holder, owner);
          onClaim?.(message.key, claim);
          return claim;
        }
        case 'renew':
          return table.renew(message.key, message.claim);
        case 'release':
          table.release(message.key, message.claim);
          return true;
        case 'current':
          return table.current(message.key) ?? null;
      }
    })();
    // A worker that is gone has no use for the answer.
    channel.send({ type: LEASE_REPLY, id: message.id, result } satisfies LeaseReply, () => {});
  };
  channel.on('message', onMessage);
  return () => channel.off('message', onMessage);
}

/** As long as a Redis command may take in the Redis lease: a primary that does not answer is as good as down. */
const REQUEST_TIMEOUT_MS = 5_000;

export interface LeaseClient {
  request(op: LeaseOp): Promise<LeaseResult>;
  /** Fails the requests still waiting and stops listening. */
  close(): void;
}

/** A worker's side of the lease requests: one in flight per call, each answered or failed in bounded time. */
export function leaseClient(channel: Channel, timeoutMs = REQUEST_TIMEOUT_MS): LeaseClient {
  let last = 0;
  const pending = new Map<number, { resolve: (r: LeaseResult) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  const settle = (id: number, outcome: { result: LeaseResult } | { err: Error }) => {
    const waiting = pending.get(id);
    if (!waiting) return;
    pending.delete(id);
    clearTimeout(waiting.timer);
    if ('err' in outcome) waiting.reject(outcome.err);
    else waiting.resolve(outcome.result);
  };
  const onMessage = (message: unknown) => {
    if (isMessage<LeaseReply>(message, LEASE_REPLY)) settle(message.id, { result: message.result });
  };
  channel.on('message', onMessage);
  return {
    request(op) {
      const id = ++last;
      return new Promise<LeaseResult>((resolve, reject) => {
        const timer = setTimeout(() => settle(id, { err: new Error(`the primary process did not answer a lease ${op.op} within ${timeoutMs} ms`) }), timeoutMs);
        timer.unref();
        pending.set(id, { resolve, reject, timer });
        channel.send({ type: LEASE, id, ...op } satisfies LeaseRequest, (err) => {
          if (err) settle(id, { err });
        });
      });
    },
    close() {
      channel.off('message', onMessage);
      for (const id of [...pending.keys()]) settle(id, { err: new Error('lease client closed') });
    },
  };
}

export interface IpcLeaseOptions {
  /** Where this worker's fills can be relayed from, told to the workers that lose a race. */
  holder: string;
  /** What is leased: one key space per kind, as in Redis (`fill-lease`, `eviction-lease`). */
  kind: string;
  ttlMs: number;
  renewMs: number;
}

/** A FillLease held by the primary, renewed while held like the Redis one. */
export function ipcFillLease(client: LeaseClient, { holder, kind, ttlMs, renewMs }: IpcLeaseOptions): FillLease {
  const key = (digest: string) => `${kind}:${digest}`;
  const renewals = new Set<NodeJS.Timeout>();
  return {
    ttlMs,
    async claim(digest): Promise<LeaseClaim> {
      const claim = (await client.request({ op: 'claim', key: key(digest), holder })) as TableClaim;
      if (!claim.owner) return claim;
      return heldClaim(renewals, renewMs, {
        renew: () => client.request({ op: 'renew', key: key(digest), claim: claim.id }),
        release: () => client.request({ op: 'release', key: key(digest), claim: claim.id }),
      });
    },
    async current(digest) {
      return ((await client.request({ op: 'current', key: key(digest) })) as string | null) ?? undefined;
    },
    async close() {
      for (const t of renewals) clearInterval(t);
      renewals.clear();
    },
  };
}
