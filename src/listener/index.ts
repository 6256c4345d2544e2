/**
 * The standalone server's socket: plain HTTP, or HTTPS from a certificate and key on disk. The
 * pair is reloaded when it changes, without dropping a connection: cert-manager swaps a symlink
 * in the files' directory, certbot repoints its live/ links, others overwrite the files in
 * place, so the directories are watched rather than the files, and the events are debounced
 * until a pair that matches can be read. New handshakes get the new pair; open connections
 * keep the one they began with.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { ConfigError } from '../config.js';
import type { ListenerTls } from './config.js';

/**
 * Bytes a response socket buffers before its writer waits for it to drain. The default (16 KiB)
 * makes every chunk a fill hands out (about 64 KiB, as they came from the upstream) wait for a
 * drain; 1 MiB lets several go at once. Measured in the bench: ten clients joining one cold
 * fill went from 1272–1773 to 1860–2623 MB/s; warm pulls did not change measurably.
 */
export const RESPONSE_BUFFER = 1024 * 1024;

/** Writers touch the two files one after the other; this lets them finish. */
const RELOAD_DEBOUNCE_MS = 250;

export interface Listener {
  readonly server: HttpServer | HttpsServer;
  readonly scheme: 'http' | 'https';
  /** Stops watching the certificate files. */
  close(): void;
}

export interface ListenerOptions {
  /** Bytes a response socket buffers before its writer waits for it to drain. */
  highWaterMark: number;
  logger: Logger;
}

/** The certificate and key as start-up reads them; one that cannot be read or used is a ConfigError naming the key. */
export function readListenerTls(tls: ListenerTls): Pair {
  try {
    return readPair(tls);
  } catch (err) {
    throw new ConfigError(`tls.${(err as PairError).key ?? 'certFile'}: ${(err as Error).message}`);
  }
}

/** A server without a request handler yet; a bad certificate or key is a ConfigError naming the key. */
export function createListener(tls: ListenerTls | undefined, options: ListenerOptions): Listener {
  const { highWaterMark, logger } = options;
  if (tls === undefined) return { server: createHttpServer({ highWaterMark }), scheme: 'http', close: () => undefined };
  let pair = readListenerTls(tls);
  const server = createHttpsServer({ highWaterMark, ...pair });
  const reload = (): void => {
    let next: Pair;
    try {
      next = readPair(tls);
    } catch (err) {
      // Most often a pair caught half-written; the writer's next event brings the rest.
      logger.warn({ certFile: tls.certFile, reason: (err as Error).message }, 'TLS certificate not reloaded; keeping the current one');
      return;
    }
    if (next.cert === pair.cert && next.key === pair.key) return;
    server.setSecureContext(next);
    pair = next;
    logger.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
  };
  const stop = watchDirectories([tls.certFile, tls.keyFile], reload, logger);
  return { server, scheme: 'https', close: stop };
}

interface Pair {
  cert: string;
  key: string;
}

type PairError = Error & { key?: 'certFile' | 'keyFile' };

/** Both files, read and checked to belong together; throws naming the file at fault. */
function readPair(tls: ListenerTls): Pair {
  const read = (file: string, key: 'certFile' | 'keyFile'): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw Object.assign(new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`), { key });
    }
  };
  const pair = { cert: read(tls.certFile, 'certFile'), key: read(tls.keyFile, 'keyFile') };
  try {
    createSecureContext(pair);
  } catch {
    throw Object.assign(new Error(`${tls.keyFile} is not the key of ${tls.certFile}, or either is no PEM`), { key: 'keyFile' as const });
  }
  return pair;
}

/** Calls `changed` once things settle after any change in the files' directories; returns the stop. */
function watchDirectories(files: string[], changed: () => void, logger: Logger): () => void {
  let timer: NodeJS.Timeout | undefined;
  const settle = (): void => {
    clearTimeout(timer);
    timer = setTimeout(changed, RELOAD_DEBOUNCE_MS);
  };
  const watchers: FSWatcher[] = [...new Set(files.map((f) => dirname(f)))].map((dir) =>
    watch(dir, { persistent: false }, settle).on('error', (err) => logger.warn({ err, dir }, 'cannot watch the TLS certificate directory')),
  );
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
