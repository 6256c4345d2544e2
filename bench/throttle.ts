/**
 * A throttled link to the upstream: a TCP proxy on 127.0.0.1 that passes what the client sends
 * as it comes and paces what the upstream answers with one token bucket for all its
 * connections, so that the upstream looks as if it were behind a link of `bytesPerSecond`.
 *
 * Why a TCP proxy in the bench rather than nginx's `limit_rate` in front of the registry: it
 * limits the link, not each response (nginx paces per connection, and as a reverse proxy it
 * would also parse, buffer and re-send every response); it is the same code path for a client
 * pulling direct and for the mirror filling, byte for byte what the registry sends, keep-alive
 * and all; and it has no configuration of its own to get wrong. Its CPU time is the bench's
 * own, not the mirror's or the upstream's, so it does not show in their CPU seconds.
 *
 * The pacing is a schedule: each chunk is due when the chunks before it would have finished at
 * the rate. The first chunk of an answer (the first the upstream sends after the client last
 * sent anything) starts afresh from now at the latest, so that idle time between requests earns
 * no burst and a small pull starts at the rate, not above it. Within an answer, a schedule that
 * fell behind (a timer that fired late: node's have 1 ms steps, where a 64 KiB chunk lasts 0.5
 * ms at 1 Gbit/s; a busy machine that descheduled this process; a receiver that stopped reading
 * for a moment, where a real link's buffers would have kept the bytes coming) catches up, by at
 * most the bucket's 50 ms, so that the harness's lateness is not bandwidth lost for good.
 * Telling the two apart by the request, not by the length of a gap, came after both ways of
 * doing it by time went wrong: a pull within 50 ms of the last one's end caught up the gap as if
 * it were late (10 MB through 1 Gbit/s in 63-72 ms instead of 80), and a 5 ms allowance lost the
 * harness's lateness on a busy machine (117 MB/s at 1 Gbit/s, 264 at 2.5).
 */
import { createConnection, createServer, type Socket } from 'node:net';

export interface Throttle {
  readonly url: string;
  readonly bytesPerSecond: number;
  stop(): Promise<void>;
}

class TokenBucket {
  /** When the link is free again: the end of what has been let through so far, at the rate. */
  private due = 0;

  constructor(
    private readonly rate: number,
    private readonly depthMs: number,
  ) {}

  /** Lets `n` bytes through, the first of an answer if `first`; answers how many ms to wait before sending them. */
  take(n: number, first: boolean): number {
    const now = performance.now();
    const start = Math.max(this.due, first ? now : now - this.depthMs);
    this.due = start + (n * 1000) / this.rate;
    return Math.max(0, start - now);
  }
}

/**
 * Forwards `from` (the upstream) to `to` (the client), each chunk once the bucket allows it, with
 * `to`'s backpressure respected; the first chunk after `to` last sent anything starts an answer.
 */
function paced(from: Socket, to: Socket, bucket: TokenBucket): void {
  let pending = 0;
  let ended = false;
  let answering = false;
  to.on('data', () => (answering = false));
  const send = (chunk: Buffer): void => {
    if (to.destroyed) return;
    if (to.write(chunk)) from.resume();
    else to.once('drain', () => from.resume());
    if (--pending === 0 && ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    pending++;
    from.pause();
    const wait = bucket.take(chunk.length, !answering);
    answering = true;
    if (wait <= 0) send(chunk);
    else setTimeout(send, wait, chunk);
  });
  from.on('end', () => {
    ended = true;
    if (pending === 0) to.end();
  });
}

export function startThrottle(target: URL, bytesPerSecond: number, depthMs = 50): Promise<Throttle> {
  const bucket = new TokenBucket(bytesPerSecond, depthMs);
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    // Nagle's algorithm off on both legs, as the endpoints themselves have it (curl, undici and
    // Go's net/http all set TCP_NODELAY): with it on, this proxy held a response's last small
    // segment until the previous one was acknowledged, and the receiver acknowledges late, so
    // every transfer on a reused connection (as the mirror's upstream connection is) took
    // about 40 ms longer: 10 MB at 1 Gbit/s in 120-130 ms instead of 80 (curl, keep-alive).
    const upstream = createConnection({ host: target.hostname, port: Number(target.port), noDelay: true });
    client.setNoDelay(true);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      // Either side failing or closing takes the other with it.
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    // A clean end of the upstream reaches the client through `paced`, after the chunks still waiting.
    upstream.on('close', (hadError) => hadError && client.destroy());
    client.pipe(upstream);
    paced(upstream, client, bucket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      resolve({
        url: `http://127.0.0.1:${port}`,
        bytesPerSecond,
        stop: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
