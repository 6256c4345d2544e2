import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../config.js';
import { redact } from '../logging/index.js';

const problems = (replication: unknown): string[] => {
  try {
    parseConfig({ replication });
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('replication config', () => {
  it('is off when absent, and accepts redis + advertise + one secret', () => {
    expect(parseConfig({}).replication).toBeUndefined();
    const r = parseConfig({ replication: { redis: 'redis://127.0.0.1:6379', advertise: 'http://10.0.0.5:5000', secretFile: '/run/s' } }).replication;
    expect(r).toMatchObject({ redis: 'redis://127.0.0.1:6379', advertise: 'http://10.0.0.5:5000', namespace: 'oci-mirror' });
  });

  it.each([
    [{ redis: 'http://x', advertise: 'http://a:1', secret: 'x'.repeat(16) }, 'replication.redis'],
    [{ redis: 'redis://x', advertise: 'a:1', secret: 'x'.repeat(16) }, 'replication.advertise'],
    [{ redis: 'redis://x', advertise: 'http://a:1/path', secret: 'x'.repeat(16) }, 'replication.advertise'],
    [{ redis: 'redis://x', advertise: 'http://a:1' }, 'replication.secret'],
    [{ redis: 'redis://x', advertise: 'http://a:1', secret: 'short' }, 'replication.secret'],
    [{ redis: 'redis://x', advertise: 'http://a:1', secret: 'x'.repeat(16), secretFile: '/s' }, 'replication.secret'],
    [{ advertise: 'http://a:1', secret: 'x'.repeat(16) }, 'replication.redis'],
    [{ redis: 'redis://x', advertise: 'http://a:1', secret: 'x'.repeat(16), extra: 1 }, 'replication'],
  ])('names the key of a bad value: %j', (replication, key) => {
    const found = problems(replication);
    expect(found.some((p) => p.startsWith(`${key}:`)), found.join('\n')).toBe(true);
  });

  it('keeps the secret and the Redis password out of logs', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(String(chunk)), done()) });
    const logger = pino({ redact }, sink);
    const config = parseConfig({ replication: { redis: 'redis://:hunter2@redis:6379', advertise: 'http://a:1', secret: 'replica-secret-1234567' } });
    logger.info({ config }, 'config');
    logger.info({ req: { headers: { 'x-mirror-replica-secret': 'replica-secret-1234567' } } }, 'request');
    expect(lines.join('')).not.toMatch(/replica-secret-1234567|hunter2/);
  });
});
