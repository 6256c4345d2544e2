/** Raw HTTP clients for tests: they report truncation and can hang up at a chosen offset. */
import { request, type IncomingHttpHeaders } from 'node:http';
import { expect } from 'vitest';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** False when the connection ended before the response did. */
  complete: boolean;
}

export interface RawOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Destroy the request once this many body bytes have arrived. */
  hangUpAfter?: number;
  /** Stop reading (without closing) after this many bytes, until `resume` resolves. */
  pauseAfter?: number;
  resume?: Promise<void>;
  timeoutMs?: number;
}

export function raw(url: string, options: RawOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // The path goes out exactly as written: WHATWG URL parsing would resolve `..` and `%2e%2e`.
    const { hostname, port, origin } = new URL(url);
    const path = url.slice(origin.length) || '/';
    // URL keeps an IPv6 literal's brackets; the socket wants the bare address.
    const req = request({ hostname: hostname.replace(/^\[(.*)\]$/, '$1'), port, path, method: options.method ?? 'GET', headers: options.headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`timed out: ${url}`)), options.timeoutMs ?? 30_000);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let paused = false;
      const finish = (complete: boolean) => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete });
      };
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (options.hangUpAfter !== undefined && size >= options.hangUpAfter) {
          res.removeAllListeners('end');
          req.destroy();
          finish(false);
        } else if (!paused && options.pauseAfter !== undefined && size >= options.pauseAfter) {
          paused = true;
          res.pause();
          void options.resume?.then(() => res.resume());
        }
      });
      res.on('end', () => finish(res.complete));
      res.on('aborted', () => finish(false));
      res.on('error', () => finish(false));
      if (options.hangUpAfter === 0) {
        req.destroy();
        finish(false);
      }
    });
    req.end();
  });
}

/**
 * Asserts that `res` is the whole of `expected`. A response the server cut (a fill that failed
 * or timed out) fails as a cut, with how far it got and `why` it may have stopped, rather than
 * as a body that differs from the blob; then the bytes are compared.
 */
export function expectWhole(res: RawResponse, expected: Buffer, why?: () => string | undefined): void {
  if (!res.complete) {
    const prefix = res.body.equals(expected.subarray(0, res.body.length)) ? 'the blob\'s first bytes' : 'bytes that differ from the blob';
    const reason = why?.();
    expect.fail(`response cut after ${res.body.length} of ${expected.length} bytes (${prefix})${reason ? `: ${reason}` : ''}`);
  }
  expect(res.body.length, 'length of a complete response').toBe(expected.length);
  expect(res.body.equals(expected), 'a complete response has the blob\'s bytes').toBe(true);
}

/** Polls until `check` returns true; bounded (on the monotonic clock, which tests faking Date leave alone). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}
