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
 * the rate, and a link that sat idle starts afresh from now, so that idle time earns no burst
 * and a small pull starts at the rate, not above it. What the harness itself loses, a timer
 * that fired late (node's timers have 1 ms steps, where a 64 KiB chunk lasts 0.5 ms at 1 Gbit/s;
 * a busy machine fires them later still), is owed and made up by the next chunks, up to 50 ms
 * of it, and so is a gap of up to GRACE_MS between two chunks (the proxy reading the next one:
 * lost for good, it cut a 2.5 Gbit/s link to 167 MB/s), so that neither is bandwidth lost for
 * good. Until this was told apart from idle time,
 * a pull that started within 50 ms of the last one's end caught up the gap as if it were owed:
 * 10 MB went through a 1 Gbit/s link in 63-72 ms instead of 80; and a 5 ms allowance, tried
 * next, cost the link 6 % of its rate (117 MB/s at 1 Gbit/s) on a busy machine.
 */
import { createConnection, createServer, type Socket } from 'node:net';

export interface Throttle {
  readonly url: string;
  readonly bytesPerSecond: number;
  stop(): Promise<void>;
}

/** A gap between two chunks this short is the harness's own work (reading the socket, a turn of the loop), not idle time. */
const GRACE_MS = 2;

class TokenBucket {
  /** When the link is free again: the end of what has been let through so far, at the rate. */
  private due = 0;
  /** Time the harness lost to timers that fired late, not yet made up (at most the bucket's depth). */
  private owed = 0;

  constructor(
    private readonly rate: number,
    private readonly depthMs: number,
  ) {}

  /** Lets `n` bytes through; answers how many ms to wait before sending them. */
  take(n: number): number {
    const now = performance.now();
    let start = this.due;
    const behind = now - start;
    if (behind > 0) {
      // Behind: what late timers and a moment's work between two chunks cost is made up at
      // once; longer, the link sat idle (a new request), which earns nothing.
      const catchUp = behind <= GRACE_MS ? behind : Math.min(behind, this.owed);
      this.owed = Math.max(0, this.owed - catchUp);
      start = now - catchUp;
    }
    this.due = start + (n * 1000) / this.rate;
    return Math.max(0, start - now);
  }

  /** A send that waited for its turn went `ms` after it was due. */
  late(ms: number): void {
    this.owed = Math.min(this.depthMs, this.owed + ms);
  }
}

/** Forwards `from` to `to`, each chunk once the bucket allows it, with `to`'s backpressure respected. */
function paced(from: Socket, to: Socket, bucket: TokenBucket): void {
  let pending = 0;
  let ended = false;
  const send = (chunk: Buffer): void => {
    if (to.destroyed) return;
    if (to.write(chunk)) from.resume();
    else to.once('drain', () => from.resume());
    if (--pending === 0 && ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    pending++;
    from.pause();
    const wait = bucket.take(chunk.length);
    if (wait <= 0) return send(chunk);
    const at = performance.now() + wait;
    setTimeout(() => {
      bucket.late(performance.now() - at);
      send(chunk);
    }, wait);
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
