import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from './config.js';

function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config', () => {
  it('has defaults that mirror Docker Hub on 127.0.0.1:5000 with ./data', () => {
    const c = parseConfig(undefined);
    expect(c.listen).toBe('127.0.0.1:5000');
    expect(c.storage).toMatchObject({ type: 'fs', path: './data' });
    expect(c.upstreams).toMatchObject([{ name: 'docker.io', urls: ['https://registry-1.docker.io'], default: false }]);
    expect(c.cache.tagTtl).toBe(300_000);
  });

  it('keeps the minimal shape of the first release working', () => {
    const c = parseConfig({
      listen: '127.0.0.1:5000',
      storage: { type: 'fs', path: './data' },
      upstreams: [{ name: 'docker.io', url: 'https://registry-1.docker.io' }],
    });
    expect(c.upstreams[0]!.urls).toEqual(['https://registry-1.docker.io']);
    expect(c.upstreams[0]!.health).toEqual({ maxFails: 1, failTimeout: 30_000, probeInterval: 1_000 });
    expect(c.upstreams[0]!.rateLimit).toEqual({ backoff: 60_000, maxBackoff: 3_600_000 });
  });

  // A parsed config is never parsed again: createMirror and startServer take the parsed type.
  it('parses durations in every unit', () => {
    const c = parseConfig({ cache: { tagTtl: '250ms' }, fill: { timeout: '2h' }, shutdownGrace: 5 });
    expect([c.cache.tagTtl, c.fill.timeout, c.shutdownGrace]).toEqual([250, 7_200_000, 5_000]);
  });

  it('leaves negativeTtl off unless set, and refuses one that would hide new tags for long', () => {
    expect(parseConfig(undefined).cache.negativeTtl).toBe(0);
    expect(parseConfig({ cache: { negativeTtl: '5s' } }).cache.negativeTtl).toBe(5_000);
    expect(problems({ cache: { negativeTtl: '2h' } })).toEqual([expect.stringContaining('cache.negativeTtl')]);
    expect(problems({ cache: { negativeTtl: 'soon' } })).toEqual([expect.stringContaining('cache.negativeTtl')]);
  });

  it('makes an upstream that forwards credentials private unless told otherwise', () => {
    const c = parseConfig({ upstreams: [{ name: 'a.io', url: 'https://a', forwardCredentials: true }, { name: 'b.io', url: 'https://b' }] });
    expect(c.upstreams.map((u) => u.private)).toEqual([true, false]);
  });

  it.each([
    [{ trustedProxies: ['10.0.0.0/33'] }, 'trustedProxies[0]: must be an IP address or a CIDR range'],
    [{ trustedProxies: ['proxy.internal'] }, 'trustedProxies[0]: must be an IP address or a CIDR range'],
    [{ upstreams: [{ name: 'x.io', url: 'https://a', urls: ['https://b'] }] }, 'upstreams[0].url: give either url or urls'],
    [{ upstreams: [{ name: 'x.io' }] }, 'upstreams[0].url: give either url or urls'],
    [{ upstreams: [{ name: 'x.io', url: 'https://a/v2/' }] }, 'upstreams[0].url: must be an http:// or https:// origin'],
    [{ upstreams: [{ name: 'x.io', url: 'https://a', username: 'u' }] }, 'upstreams[0].password: username and password go together'],
    [{ upstreams: [{ name: 'not a host', url: 'https://a' }] }, 'upstreams[0].name: must be a registry host name'],
    [
      { upstreams: [{ name: 'a.io', url: 'https://a' }, { name: 'b.io', url: 'https://b', aliases: ['a.io'] }] },
      'upstreams[1].aliases: "a.io" already names upstream a.io',
    ],
    [
      { upstreams: [{ name: 'a.io', url: 'https://a', default: true }, { name: 'b.io', url: 'https://b', default: true }] },
      'upstreams: only one upstream can have default: true',
    ],
    [
      { upstreams: [{ name: 'a.io', url: 'https://a' }], fallbackGroups: [{ upstreams: ['a.io', 'nope.io'] }] },
      'fallbackGroups[0].upstreams[1]: no upstream is named "nope.io"',
    ],
    [{ upstreams: [{ name: 'a.io', url: 'https://a', health: { maxFails: 0 } }] }, 'upstreams[0].health.maxFails'],
    [{ upstreams: [{ name: 'a.io', url: 'https://a', rateLimit: { backoff: 'soon' } }] }, 'upstreams[0].rateLimit.backoff'],
    [{ cache: { tagTTL: '5m' } }, 'cache: Unrecognized key: "tagTTL"'],
    [
      { upstreams: [{ name: 'a.io', url: 'https://a', username: 'u', password: 'p', passwordFile: '/f' }] },
      'upstreams[0].password: give one of password, passwordFile, passwordEnv',
    ],
    [{ upstreams: [{ name: 'a.io', url: 'https://a', username: 'u', passwordEnv: 'P', token: 't' }] }, 'upstreams[0].token: a static token replaces'],
    [{ upstreams: [{ name: 'a.io', url: 'https://a', allow: ['library/nginx:1.*'] }] }, 'upstreams[0].allow[0]: must be a repository glob'],
    [{ upstreams: [{ name: 'a.io', url: 'https://a', deny: ['x@sha256:*'] }] }, 'upstreams[0].deny[0]: must be a repository glob'],
    [{ upstreams: [{ name: 'a.io', url: 'https://a', allow: [] }] }, 'upstreams[0].allow: an empty allow list mirrors nothing'],
    [{ auth: { tokens: [{ name: 'ci' }] } }, 'auth.tokens[0]: give exactly one of token, tokenFile, tokenEnv'],
    [{ auth: { tokens: [{ name: 'ci', token: 'short' }] } }, 'auth.tokens[0].token'],
  ])('names the key: %j', (input, message) => {
    expect(problems(input).join('\n')).toContain(message);
  });
});
