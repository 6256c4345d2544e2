import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';

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
