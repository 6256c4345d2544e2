import { describe, expect, it } from 'vitest';
import { parseWwwAuthenticate } from './www-authenticate.js';

const plain = (value: string | string[] | undefined) =>
  parseWwwAuthenticate(value).map((c) => ({ ...c, params: { ...c.params } }));

describe('parseWwwAuthenticate', () => {
  it('parses the Docker Hub challenge', () => {
    expect(
      plain('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'),
    ).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ]);
  });

  it('lower-cases scheme and parameter names, not values', () => {
    expect(plain('BEARER Realm="X",SERVICE=Reg')).toEqual([{ scheme: 'bearer', params: { realm: 'X', service: 'Reg' } }]);
  });

  it('splits several challenges in one line (RFC 7235 §4.1 example)', () => {
    expect(plain('Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"')).toEqual([
      { scheme: 'newauth', params: { realm: 'apps', type: '1', title: 'Login to "apps"' } },
      { scheme: 'basic', params: { realm: 'simple' } },
    ]);
  });

  it('takes challenges from several header lines', () => {
    expect(plain(['Basic realm="a"', 'Bearer realm="b",service="s"'])).toEqual([
      { scheme: 'basic', params: { realm: 'a' } },
      { scheme: 'bearer', params: { realm: 'b', service: 's' } },
    ]);
  });

  it('keeps commas, equals signs and escapes inside quoted strings', () => {
    expect(plain('Bearer realm="https://h/t?a=1,b=2", scope="repository:x:pull,push", msg="a\\\\b\\,c"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://h/t?a=1,b=2', scope: 'repository:x:pull,push', msg: 'a\\b,c' } },
    ]);
  });

  it('reads token68', () => {
    expect(plain('Negotiate YIIJvwYGKwYBBQUCoIIJszCCCa+gJDAi==, Basic realm="r"')).toEqual([
      { scheme: 'negotiate', params: {}, token68: 'YIIJvwYGKwYBBQUCoIIJszCCCa+gJDAi==' },
      { scheme: 'basic', params: { realm: 'r' } },
    ]);
    expect(plain('Custom abc=')).toEqual([{ scheme: 'custom', params: {}, token68: 'abc=' }]);
  });

  it('accepts bare schemes, whitespace around "=" and stray commas', () => {
    expect(plain(' , Basic , Bearer  realm = "r" ,, service=s ,')).toEqual([
      { scheme: 'basic', params: {} },
      { scheme: 'bearer', params: { realm: 'r', service: 's' } },
    ]);
  });

  it('is lenient with unquoted URLs and junk after a quoted value', () => {
    expect(plain('Bearer realm=https://auth.example.com/token,service=reg "junk", x="y"junk')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example.com/token', service: 'reg "junk"', x: 'y' } },
    ]);
  });

  it('keeps the first of a repeated parameter', () => {
    expect(plain('Bearer realm="first", realm="second"')).toEqual([{ scheme: 'bearer', params: { realm: 'first' } }]);
  });

  it('confines an unclosed quote to its own line', () => {
    expect(plain(['Bearer realm="open, service=x', 'Basic realm="b"'])).toEqual([
      { scheme: 'bearer', params: { realm: 'open, service=x' } },
      { scheme: 'basic', params: { realm: 'b' } },
    ]);
  });

  it('drops what is not a challenge and never throws', () => {
    expect(plain(undefined)).toEqual([]);
    expect(plain('')).toEqual([]);
    expect(plain('realm="orphan", Basic')).toEqual([{ scheme: 'basic', params: {} }]);
    expect(plain('"quoted", =, Bearer realm="r"')).toEqual([{ scheme: 'bearer', params: { realm: 'r' } }]);
    for (const junk of ['"', '\\', '=', ',,,', 'a=b=c', 'Basic "unterminated', 'Bearer realm="x\\', '\u0000\u00ff']) {
      expect(() => parseWwwAuthenticate(junk)).not.toThrow();
    }
  });

  it('does not let a parameter named __proto__ reach the prototype', () => {
    const [c] = parseWwwAuthenticate('Bearer __proto__="x", realm="r"');
    expect(c!.params.realm).toBe('r');
    expect(c!.params.__proto__).toBe('x');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
