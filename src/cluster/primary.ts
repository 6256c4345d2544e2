/**
 * The primary of `workers: N`: recovers the storage once, forks N workers that share the
 * listening port (node:cluster), hands each the config and a relay secret made up for this
 * run, and holds the leases through which they fetch each blob from the upstream once. A
 * worker that dies loses its leases at once, so that the workers relaying its fills take
 * them over, and is replaced (later and later if it keeps dying); once none of its fills can be
 * alive, what they left unfinished in the storage is removed. A worker that dies before
 * every worker serves ends the start: the others are stopped and the primary exits with its
 * code, as a single process with that config would have. On `stop` the workers get SIGTERM
 * and drain as a single process does; any still running after the grace is killed.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { MirrorConfig } from '../config.js';
import { withServerFlags } from '../node-flags.js';
import { LEASE_TTL_MS } from '../replication/config.js';
import { createStorage, liveFillAge, recoverStorage } from '../storage-config.js';
import type { Storage } from '../storage.js';
import { answerLeases, HELLO, isMessage, LISTENING, START, type Channel, type ListeningMessage, type StartMessage } from './ipc.js';
import { LeaseTable } from './lease-table.js';
import { restarts } from './restarts.js';

export interface PrimaryOptions {
  config: MirrorConfig;
  workers: number;
  logger: Logger;
  /** Settles when the primary is to stop (SIGTERM). */
  stop: Promise<unknown>;
}

/** Beyond the config's shutdownGrace: a draining worker also closes its storage and exits. */
const EXIT_MARGIN_MS = 10_000;
/** setTimeout's longest; a later timer fires at once. Early is safe for the leftovers: their age is checked, not assumed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs until stopped; resolves with the exit code. */
export async function runPrimary({ config, workers: count, logger, stop }: PrimaryOptions): Promise<number> {
  // Before any worker: a worker's recovery would remove its siblings' fills in flight.
  await recoverOnce(config);
  const secret = randomBytes(32).toString('base64url');
  const table = new LeaseTable(LEASE_TTL_MS);
  const replacements = restarts();
  // Structured clone: the config arrives as parsed, undefined members and all. The workers serve: they get the server's node flags.
  cluster.setupPrimary({ serialization: 'advanced', execArgv: withServerFlags(process.execArgv) });

  const live = new Set<Worker>();
  const pending = new Set<NodeJS.Timeout>();
  /** Workers that said they serve; any exit before all have is the end of the start. */
  let listening = 0;
  let serving = false;
  let stopping = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));

  let exitCode = 0;
  const shutdown = (code: number) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    for (const t of pending) clearTimeout(t);
    if (live.size === 0) return finish(code);
    for (const w of live) w.process.kill('SIGTERM');
    const kill = setTimeout(() => {
      for (const w of live) w.process.kill('SIGKILL');
    }, config.shutdownGrace + EXIT_MARGIN_MS);
    void done.then(() => clearTimeout(kill));
  };

  const fork = () => {
    const worker = cluster.fork();
    live.add(worker);
    const channel = channelOf(worker);
    const hangUp = answerLeases(table, channel, worker.id, (key, claim) => {
      if (claim.owner) logger.debug({ worker: worker.process.pid, key }, 'lease claimed');
    });
    worker.on('message', (message: unknown) => {
      if (isMessage(message, HELLO)) channel.send({ type: START, config, secret } satisfies StartMessage, () => {});
      if (!isMessage<ListeningMessage>(message, LISTENING)) return;
      listening++;
      logger.debug({ worker: worker.process.pid, relay: message.relay }, 'worker listening');
      if (!serving && listening === count) {
        serving = true;
        logger.info({ workers: count, listen: config.listen }, 'workers listening');
      }
    });
    worker.on('exit', (code, signal) => {
      live.delete(worker);
      hangUp();
      const leases = table.releaseOwner(worker.id);
      const pid = worker.process.pid;
      if (stopping) {
        if (live.size === 0) finish(exitCode);
        return;
      }
      if (!serving) {
        logger.error({ worker: pid, code, signal }, 'a worker exited before every worker served; stopping');
        return shutdown(code || 1);
      }
      const delay = replacements.next(Date.now());
      logger.warn({ worker: pid, code, signal, leases, restartInMs: delay }, 'worker exited; starting another');
      later(delay, fork);
      later(Math.min(leftoverAge, MAX_TIMER_MS), () => void removeLeftovers(pid));
    });
  };

  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      pending.delete(timer);
      run();
    }, ms);
    pending.add(timer);
  };

  // What a dead worker was writing (its fills' spools above all) stays in the storage until no
  // fill it could have had is alive, then goes; its siblings' writes in flight are younger and stay.
  const leftoverAge = liveFillAge(config.fill.timeout);
  const removeLeftovers = async (pid: number | undefined) => {
    try {
      await recoverBlobs(config, leftoverAge);
      logger.info({ worker: pid }, "removed what a dead worker's fills left unfinished");
    } catch (err) {
      logger.warn({ worker: pid, err }, "could not remove what a dead worker's fills left unfinished");
    }
  };

  for (let i = 0; i < count; i++) fork();
  void stop.then(() => shutdown(0));
  return done;
}

/** Start-up recovery of the storage, as a single process runs it before serving. */
function recoverOnce(config: MirrorConfig): Promise<void> {
  return withStorage(config, 0, recoverStorage);
}

/** While workers serve: only the blobs' unfinished writes older than `olderThan` (the metadata store's recovery is for the start alone). */
function recoverBlobs(config: MirrorConfig, olderThan: number): Promise<void> {
  return withStorage(config, olderThan, async ({ blobs }) => blobs.recover?.());
}

/** Both halves are closed, used or not: Keyv's share one connection, which closes with the second. */
async function withStorage(config: MirrorConfig, recoverOlderThan: number, run: (storage: Storage) => Promise<void>): Promise<void> {
  const storage = createStorage(config.storage, { recoverOlderThan });
  try {
    await run(storage);
  } finally {
    await Promise.allSettled([storage.blobs.close?.(), storage.meta.close?.()]);
  }
}

function channelOf(worker: Worker): Channel {
  return {
    send: (message, callback) => worker.send(message as Parameters<Worker['send']>[0], undefined, callback),
    on: (event, listener) => worker.on(event, listener),
    off: (event, listener) => worker.off(event, listener),
  };
}
