import { describe, expect, it } from 'vitest';
import { clientAddress } from './client-address.js';

describe('clientAddress', () => {
  const behindProxies = clientAddress(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);

  it('is the peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
    expect(clientAddress([])('127.0.0.1', '203.0.113.9')).toBe('127.0.0.1');
  });

  it('is the peer when the peer is not a trusted proxy: a client can write any header', () => {
    expect(behindProxies('198.51.100.7', '203.0.113.9')).toBe('198.51.100.7');
  });

  it('skips trusted hops from the right and stops at the first untrusted one', () => {
    expect(behindProxies('127.0.0.1', '203.0.113.9')).toBe('203.0.113.9');
    expect(behindProxies('10.1.2.3', '6.6.6.6, 203.0.113.9, 10.0.0.5')).toBe('203.0.113.9');
    expect(behindProxies('::ffff:10.1.2.3', '2001:db8::1, fd00::1')).toBe('2001:db8::1');
  });

  it('stops at a hop it cannot read, and unmaps IPv4 peers of a dual-stack socket', () => {
    expect(behindProxies('10.1.2.3', 'junk, 10.0.0.5')).toBe('10.1.2.3');
    expect(behindProxies('::ffff:198.51.100.7', undefined)).toBe('198.51.100.7');
    expect(behindProxies('10.1.2.3', '10.0.0.9')).toBe('10.0.0.9');
  });
});
