import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../config.js';
import { createListener } from './index.js';

describe('listener tls config', () => {
  it('is plain HTTP unless tls is set, and then needs both files', () => {
    expect(parseConfig({}).tls).toBeUndefined();
    expect(parseConfig({ tls: { certFile: '/c.crt', keyFile: '/c.key' } }).tls).toEqual({ certFile: '/c.crt', keyFile: '/c.key' });
    expect(() => parseConfig({ tls: { certFile: '/c.crt' } })).toThrow(/tls\.keyFile: /);
    expect(() => parseConfig({ tls: { certFile: '/c.crt', keyFile: '/c.key', http2: true } })).toThrow(/tls: Unrecognized key: "http2"/);
  });

  it('stops the start with a ConfigError naming the key when a file cannot be read or used', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oci-listener-tls-'));
    const logger = pino({ level: 'silent' });
    try {
      const notPem = join(dir, 'not.pem');
      await writeFile(notPem, 'hello\n');
      const listen = (certFile: string, keyFile: string) => () => createListener({ certFile, keyFile }, { highWaterMark: 16_384, logger });
      expect(listen(join(dir, 'missing.crt'), notPem)).toThrow(ConfigError);
      expect(listen(join(dir, 'missing.crt'), notPem)).toThrow(/^tls\.certFile: cannot read .*missing\.crt: ENOENT$/);
      expect(listen(notPem, join(dir, 'missing.key'))).toThrow(/^tls\.keyFile: cannot read /);
      expect(listen(notPem, notPem)).toThrow(/^tls\.keyFile: .* is not the key of /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
