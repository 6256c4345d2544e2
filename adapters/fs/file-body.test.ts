import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileBody } from './file-body.js';

describe('FileBody', () => {
  let dir: string;
  let file: string;
  const data = randomBytes(3 * 1024 * 1024 + 17); // more than two of its buffers
  let server: Server | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'file-body-'));
    file = join(dir, 'blob');
    await writeFile(file, data);
  });
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const body = async (start = 0, end = data.length - 1) => new FileBody(await open(file, 'r'), start, end);

  /** Serves one FileBody per request, piped as koa pipes a stream body; resolves the bodies made. */
  const serve = async (make: () => Promise<FileBody>) => {
    const bodies: FileBody[] = [];
    server = createServer((req, res) => {
      void make().then((b) => {
        bodies.push(b);
        res.setHeader('content-length', String(req.headers['x-length']));
        b.pipe(res);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { port: (server.address() as AddressInfo).port, bodies };
  };

  const get = (port: number, length: number) =>
    new Promise<Buffer>((resolve, reject) => {
      request({ port, host: '127.0.0.1', headers: { 'x-length': String(length) } }, (res) => buffer(res).then(resolve, reject))
        .on('error', reject)
        .end();
    });

  // Buffers compared with equals(): vitest's toEqual walks a 3 MB buffer byte by byte, for seconds.
  it('reads a range like any Readable, each chunk its own', async () => {
    expect((await buffer(await body())).equals(data)).toBe(true);
    expect((await buffer(await body(5, 1_500_000))).equals(data.subarray(5, 1_500_001))).toBe(true);
    expect(await buffer(await body(0, -1))).toEqual(Buffer.alloc(0));
  });

  it('sends the whole file and a range into an HTTP response, and closes the file', async () => {
    const { port, bodies } = await serve(() => body());
    expect((await get(port, data.length)).equals(data)).toBe(true);
    server!.removeAllListeners('request');
    server!.on('request', (req, res) => {
      void body(1_000_000, 2_500_000).then((b) => {
        bodies.push(b);
        res.setHeader('content-length', '1500001');
        b.pipe(res);
      });
    });
    expect((await get(port, 1_500_001)).equals(data.subarray(1_000_000, 2_500_001))).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    for (const b of bodies) expect(b.destroyed).toBe(true);
  });

  it('sends through stream.pipeline, as koa does, from its own buffers', async () => {
    let reads = 0;
    const { port, bodies } = await serve(() => body());
    server!.removeAllListeners('request');
    server!.on('request', (_req, res) => {
      void body().then((b) => {
        const read = b._read.bind(b);
        b._read = () => {
          reads++; // a chunk of a fresh buffer: the ordinary Readable path
          read();
        };
        bodies.push(b);
        res.setHeader('content-length', String(data.length));
        pipeline(b, res, () => {});
      });
    });
    expect((await get(port, data.length)).equals(data)).toBe(true);
    for (let i = 0; i < 100 && !bodies[0]?.destroyed; i++) await new Promise((r) => setTimeout(r, 20));
    expect(bodies[0]?.destroyed).toBe(true);
    expect(bodies[0]?.readableEnded).toBe(true);
    expect(reads).toBe(0);
  });

  it('stops and closes the file when the client goes away mid-body', async () => {
    const { port, bodies } = await serve(() => body());
    await new Promise<void>((resolve) => {
      const req = request({ port, host: '127.0.0.1', headers: { 'x-length': String(data.length) } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end();
    });
    for (let i = 0; i < 100 && !bodies[0]?.destroyed; i++) await new Promise((r) => setTimeout(r, 20));
    expect(bodies[0]?.destroyed).toBe(true);
  });

  it('fails, rather than sending short, when the file shrinks while being read', async () => {
    const b = await body();
    await truncate(file, 1024);
    await expect(buffer(b)).rejects.toThrow(/ended at 1024 bytes/);
  });
});
