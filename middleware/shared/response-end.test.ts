import { once } from 'node:events';
import { request, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import Koa, { type Middleware } from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import { onResponseEnd, type ResponseEnd } from './response-end.js';

let server: Server | undefined;
afterEach(() => {
  server?.closeAllConnections();
  server?.close();
  server = undefined;
});

async function serve(middleware: Middleware): Promise<string> {
  const app = new Koa();
  app.on('error', () => {});
  app.use(middleware);
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Resolves with the first `count` reports. */
function reports(count: number): { seen: ResponseEnd[]; done: Promise<ResponseEnd[]>; add: (end: ResponseEnd) => void } {
  const seen: ResponseEnd[] = [];
  let resolve!: (all: ResponseEnd[]) => void;
  const done = new Promise<ResponseEnd[]>((r) => (resolve = r));
  return {
    seen,
    done,
    add(end) {
      seen.push(end);
      if (seen.length === count) resolve(seen);
    },
  };
}

describe('onResponseEnd', () => {
  it('reports a completed response once per observer, with its status and body length, from one close listener', async () => {
    const r = reports(3);
    let listeners = -1;
    const url = await serve(async (ctx) => {
      for (let i = 0; i < 3; i++) onResponseEnd(ctx, r.add);
      listeners = ctx.res.listenerCount('close');
      ctx.status = 201;
      ctx.body = Buffer.alloc(1000);
    });
    const res = await fetch(url);
    expect((await res.arrayBuffer()).byteLength).toBe(1000);
    const all = await r.done;
    expect(all.map((e) => [e.status, e.complete, e.bytes])).toEqual([
      [201, true, 1000],
      [201, true, 1000],
      [201, true, 1000],
    ]);
    expect(all.every((e) => e.durationMs >= 0)).toBe(true);
    // koa's own watch plus ours, however many observers.
    expect(listeners).toBeLessThanOrEqual(2);
  });

  it('reports a response whose client went away in the middle of the body as not complete, with 0 bytes', async () => {
    const r = reports(1);
    const body = new PassThrough();
    const url = await serve(async (ctx) => {
      onResponseEnd(ctx, r.add);
      ctx.set('Content-Length', '100000');
      ctx.body = body;
      body.write(Buffer.alloc(1000));
    });
    const req = request(url);
    req.on('error', () => {});
    req.end();
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    await once(res, 'data');
    req.destroy();
    const [end] = await r.done;
    expect(end).toMatchObject({ status: 200, complete: false, bytes: 0 });
    body.destroy();
  });

  it('reports a pipelined request whose connection went away before its turn as not complete', async () => {
    // Its response waits in node's queue without a socket and never emits `close`.
    const r = reports(2);
    const first = new PassThrough();
    const url = new URL(
      await serve(async (ctx) => {
        onResponseEnd(ctx, r.add);
        if (ctx.path === '/first') {
          ctx.set('Content-Length', '100000');
          ctx.body = first;
          first.write(Buffer.alloc(1000));
        } else {
          ctx.body = 'second';
        }
      }),
    );
    const socket = connect(Number(url.port), url.hostname);
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(socket, 'data');
    socket.destroy();
    const all = await r.done;
    expect(all.map((e) => [e.complete, e.bytes])).toEqual([
      [false, 0],
      [false, 0],
    ]);
    first.destroy();
  });

  it('reports an observer that came after the response had closed, on the next tick', async () => {
    const r = reports(2);
    const url = await serve(async (ctx) => {
      onResponseEnd(ctx, r.add);
      ctx.body = 'hello';
      ctx.res.once('close', () => onResponseEnd(ctx, r.add));
    });
    await (await fetch(url)).text();
    const all = await r.done;
    expect(all.map((e) => [e.complete, e.bytes])).toEqual([
      [true, 5],
      [true, 5],
    ]);
  });
});
