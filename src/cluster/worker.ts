/**
 * A worker's start: the config and the relay secret from the primary, a loopback socket of
 * its own where its siblings stream its fills from (the replicas' relay, `/_mirror/fills/`),
 * and leases held by the primary in place of Redis. The public port is shared through
 * node:cluster; the relay socket is `exclusive`, or every worker would get the same one.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MirrorConfig } from '../config.js';
import { RESPONSE_BUFFER } from '../listener/index.js';
import { LEASE_RENEW_MS, LEASE_TTL_MS } from '../replication/config.js';
import { leasedReplication, type Replication } from '../replication/index.js';
import { HELLO, ipcFillLease, isMessage, leaseClient, LISTENING, START, type Channel, type ListeningMessage, type StartMessage } from './ipc.js';

/** The primary sends the start at once; a worker that never hears it has lost its primary. */
const START_TIMEOUT_MS = 30_000;

export interface WorkerStart {
  config: MirrorConfig;
  /** Coordination with the sibling workers, for `createMirror`. */
  replication: Replication;
  /** Listening on 127.0.0.1, no handler yet: the server answers the fill relay on it. */
  relayServer: Server;
  /** Tells the primary that this worker serves. */
  listening(): void;
}

export async function startWorker(channel: Channel = processChannel()): Promise<WorkerStart> {
  const { config, secret } = await startMessage(channel);
  const relayServer = createServer({ highWaterMark: RESPONSE_BUFFER });
  relayServer.listen({ host: '127.0.0.1', port: 0, exclusive: true });
  await once(relayServer, 'listening');
  const holder = `http://127.0.0.1:${(relayServer.address() as AddressInfo).port}`;
  return {
    config,
    replication: workerReplication(channel, holder, secret),
    relayServer,
    listening: () => channel.send({ type: LISTENING, relay: holder } satisfies ListeningMessage, () => {}),
  };
}

/** The same leases as a replica's (fills, eviction turns), asked of the primary. */
export function workerReplication(channel: Channel, holder: string, secret: string): Replication {
  const client = leaseClient(channel);
  const lease = (kind: string) => ipcFillLease(client, { holder, kind, ttlMs: LEASE_TTL_MS, renewMs: LEASE_RENEW_MS });
  const fills = lease('fill-lease');
  const turns = lease('eviction-lease');
  return leasedReplication(secret, fills, turns, async () => {
    await Promise.all([fills.close(), turns.close()]);
    client.close();
  });
}

function processChannel(): Channel {
  if (!process.send) throw new Error('a cluster worker needs the IPC channel to its primary');
  return {
    send: (message, callback) => process.send!(message, callback),
    on: (event, listener) => process.on(event, listener),
    off: (event, listener) => process.off(event, listener),
  };
}

function startMessage(channel: Channel): Promise<StartMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      channel.off('message', onMessage);
      reject(new Error(`no start message from the primary process within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    const onMessage = (message: unknown) => {
      if (!isMessage<StartMessage>(message, START)) return;
      clearTimeout(timer);
      channel.off('message', onMessage);
      resolve(message);
    };
    channel.on('message', onMessage);
    channel.send({ type: HELLO }, (err) => {
      if (err) reject(err);
    });
  });
}
