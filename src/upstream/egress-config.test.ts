import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { readUpstreamTls } from './trust.js';

const upstream = (extra: Record<string, unknown>) => ({ upstreams: [{ name: 'r.test', url: 'https://r.test', ...extra }] });

describe('upstream proxy config', () => {
  it('takes a proxy origin or none, and leaves it unset by default', () => {
    expect(parseConfig(upstream({})).upstreams[0]!.proxy).toBeUndefined();
    expect(parseConfig(upstream({ proxy: 'http://proxy.internal:3128' })).upstreams[0]!.proxy).toBe('http://proxy.internal:3128');
    expect(parseConfig(upstream({ proxy: 'none' })).upstreams[0]!.proxy).toBe('none');
  });

  it('names the key of a proxy that is no http(s) origin', () => {
    for (const proxy of ['proxy.internal:3128', 'socks5://127.0.0.1:1080', 'http://proxy/path', 'off']) {
      expect(() => parseConfig(upstream({ proxy }))).toThrow(/upstreams\[0\]\.proxy: must be "none" or a proxy origin/);
    }
  });
});

describe('upstream tls config', () => {
  it('leaves tls unset by default, and verifies unless told otherwise', () => {
    expect(parseConfig(upstream({})).upstreams[0]!.tls).toBeUndefined();
    expect(parseConfig(upstream({ tls: { caFile: '/ca.crt' } })).upstreams[0]!.tls).toEqual({ caFile: '/ca.crt', insecureSkipVerify: false });
  });

  it('names the key: certFile without keyFile, an unknown key, a wrong type', () => {
    expect(() => parseConfig(upstream({ tls: { certFile: '/c.crt' } }))).toThrow(/upstreams\[0\]\.tls\.certFile: certFile and keyFile go together/);
    expect(() => parseConfig(upstream({ tls: { ca: '/ca.crt' } }))).toThrow(/upstreams\[0\]\.tls: Unrecognized key: "ca"/);
    expect(() => parseConfig(upstream({ tls: { insecureSkipVerify: 'yes' } }))).toThrow(/upstreams\[0\]\.tls\.insecureSkipVerify/);
  });

  it('reads the files at start-up; one it cannot read or use is a config error naming the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oci-tls-config-'));
    try {
      const notPem = join(dir, 'not.pem');
      await writeFile(notPem, 'hello\n');
      expect(() => readUpstreamTls({ caFile: join(dir, 'missing.crt'), insecureSkipVerify: false }, 'upstreams[r.test].tls')).toThrow(
        /^upstreams\[r\.test\]\.tls\.caFile: cannot read .*missing\.crt: ENOENT$/,
      );
      expect(() => readUpstreamTls({ caFile: notPem, insecureSkipVerify: false }, 'upstreams[r.test].tls')).toThrow(/^upstreams\[r\.test\]\.tls\.caFile: .* holds no usable PEM certificate$/);
      expect(() => readUpstreamTls({ certFile: notPem, keyFile: notPem, insecureSkipVerify: false }, 'upstreams[r.test].tls')).toThrow(/^upstreams\[r\.test\]\.tls\.keyFile: /);
      expect(readUpstreamTls(undefined, 'upstreams[r.test].tls')).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
