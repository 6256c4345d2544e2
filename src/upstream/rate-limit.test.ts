/** Rate-limit figures and back-off over a faked clock: no test here waits for real time. */
import { describe, expect, it } from 'vitest';
import { isOciError, type OciError } from '../errors.js';
import { heldOff, parseRateLimitHeader, RateLimit, retryAfterMs, type BackoffEvent } from './rate-limit.js';

function clock() {
  let t = Date.parse('2026-11-30T12:00:00Z');
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function refusal(limits: RateLimit): OciError | undefined {
  try {
    limits.check();
    return undefined;
  } catch (err) {
    if (!isOciError(err)) throw err;
    return err;
  }
}

describe('parseRateLimitHeader', () => {
  it('reads Docker Hub’s number and window', () => {
    expect(parseRateLimitHeader('100;w=21600')).toEqual({ value: 100, window: 21600 });
    expect(parseRateLimitHeader(' 76 ; w=21600 ')).toEqual({ value: 76, window: 21600 });
    expect(parseRateLimitHeader(['0;w=60', '5;w=60'])).toEqual({ value: 0, window: 60 });
  });

  it('takes a bare number, other parameters, and the first item of a list', () => {
    expect(parseRateLimitHeader('42')).toEqual({ value: 42 });
    expect(parseRateLimitHeader('10;comment="x";w=3600')).toEqual({ value: 10, window: 3600 });
    expect(parseRateLimitHeader('100, 100;w=60, 1000;w=3600')).toEqual({ value: 100 });
  });

  it('ignores garbage', () => {
    for (const bad of [undefined, '', 'lots', '-1', '1.5', '100;w', '100 apples', 'w=60', '1e9', '9'.repeat(20)]) {
      expect(parseRateLimitHeader(bad)).toBeUndefined();
    }
    // A window that is not a number is not a window; the figure still counts.
    expect(parseRateLimitHeader('100;w=soon')).toEqual({ value: 100 });
  });
});

describe('retryAfterMs', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');

  it('reads delay-seconds and HTTP-dates (IMF-fixdate and RFC 850)', () => {
    expect(retryAfterMs('30', now)).toBe(30_000);
    expect(retryAfterMs(['0'], now)).toBe(0);
    expect(retryAfterMs('Mon, 30 Nov 2026 12:01:30 GMT', now)).toBe(90_000);
    expect(retryAfterMs('Monday, 30-Nov-26 12:00:10 GMT', now)).toBe(10_000);
  });

  it('makes a date in the past no wait at all', () => {
    expect(retryAfterMs('Sun, 29 Nov 2026 12:00:00 GMT', now)).toBe(0);
  });

  it('ignores what is neither', () => {
    for (const bad of [undefined, '', 'soon', '-5', '1.5', 'tomorrow GMT', '2026-11-30T12:00:00Z', 'Mon, 99 Foo 2026 GMT']) {
      expect(retryAfterMs(bad, now)).toBeUndefined();
    }
  });
});

describe('RateLimit', () => {
  it('lets requests through until a 429, then refuses them for Retry-After, then lets them through again', () => {
    const c = clock();
    const limits = new RateLimit('docker.io', { now: c.now });
    expect(refusal(limits)).toBeUndefined();
    limits.observe(429, { 'retry-after': '30' });

    const err = refusal(limits);
    expect(err).toMatchObject({ code: 'TOOMANYREQUESTS', status: 429, headers: { 'Retry-After': '30' } });
    expect(err?.message).toBe('upstream docker.io rate limit reached; retry in 30s');
    expect(heldOff(err)).toBe(true);

    c.advance(20_500);
    expect(refusal(limits)?.headers).toEqual({ 'Retry-After': '10' });
    expect(limits.snapshot().backoffSeconds).toBe(10);
    c.advance(9_500);
    expect(refusal(limits)).toBeUndefined();
    expect(limits.snapshot().backoffSeconds).toBe(0);
  });

  it('holds off for the default back-off when the 429 says no usable Retry-After', () => {
    const c = clock();
    const limits = new RateLimit('r.test', { now: c.now, backoff: 60_000 });
    limits.observe(429, { 'retry-after': 'whenever' });
    expect(refusal(limits)?.headers).toEqual({ 'Retry-After': '60' });
    c.advance(60_000);
    expect(refusal(limits)).toBeUndefined();
  });

  it('caps a long Retry-After at maxBackoff, and maxBackoff 0 turns back-off off', () => {
    const c = clock();
    const capped = new RateLimit('r.test', { now: c.now });
    capped.observe(429, { 'retry-after': '86400' });
    expect(capped.snapshot().backoffSeconds).toBe(3600);
    capped.observe(429, { 'retry-after': 'Tue, 01 Dec 2026 12:00:00 GMT' });
    expect(capped.snapshot().backoffSeconds).toBe(3600);

    const off = new RateLimit('r.test', { now: c.now, maxBackoff: 0 });
    off.observe(429, { 'retry-after': '30' });
    off.observe(429, {});
    expect(refusal(off)).toBeUndefined();
  });

  it('starts no back-off for Retry-After: 0 or a date gone by, nor for any other status', () => {
    const c = clock();
    const limits = new RateLimit('r.test', { now: c.now });
    limits.observe(429, { 'retry-after': '0' });
    limits.observe(429, { 'retry-after': 'Sun, 29 Nov 2026 12:00:00 GMT' });
    limits.observe(503, { 'retry-after': '30' });
    limits.observe(200, { 'retry-after': '30' });
    expect(refusal(limits)).toBeUndefined();
  });

  it('tells of a back-off once when it starts, and the longest of overlapping waits holds', () => {
    const c = clock();
    const told: BackoffEvent[] = [];
    const limits = new RateLimit('docker.io', { now: c.now, onBackoff: (e) => told.push(e) });
    limits.observe(429, { 'retry-after': '10' });
    limits.observe(429, { 'retry-after': '40' });
    limits.observe(429, { 'retry-after': '5' });
    expect(told).toEqual([{ upstream: 'docker.io', seconds: 10, source: 'retry-after' }]);
    expect(limits.snapshot().backoffSeconds).toBe(40);

    c.advance(40_000);
    limits.observe(429, {});
    expect(told).toEqual([
      { upstream: 'docker.io', seconds: 10, source: 'retry-after' },
      { upstream: 'docker.io', seconds: 60, source: 'default' },
    ]);
  });

  it('keeps the last figures the upstream sent, and keeps them through garbage', () => {
    const limits = new RateLimit('docker.io');
    expect(limits.snapshot()).toEqual({ backoffSeconds: 0 });
    limits.observe(200, { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600' });
    expect(limits.snapshot()).toEqual({ limit: 100, remaining: 76, window: 21600, backoffSeconds: 0 });
    limits.observe(200, { 'ratelimit-limit': 'many', 'ratelimit-remaining': '75;w=21600' });
    limits.observe(404, {});
    expect(limits.snapshot()).toEqual({ limit: 100, remaining: 75, window: 21600, backoffSeconds: 0 });
    limits.observe(429, { 'ratelimit-remaining': '0;w=21600', 'retry-after': '30' });
    expect(limits.snapshot()).toMatchObject({ remaining: 0, backoffSeconds: 30 });
  });

  it('marks only its own refusals as held off', () => {
    expect(heldOff(new Error('x'))).toBe(false);
    expect(heldOff(undefined)).toBe(false);
  });
});
