/**
 * A secret file rotated the ways it is in production: rewritten in place (vault-agent, certbot),
 * replaced by rename, and swapped as a Kubernetes Secret volume swaps its `..data` link. The
 * clock is faked: a test says when a check is due instead of waiting for one.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHECK_EVERY_MS, FileSecret, type SecretReload } from './secret-file.js';
import { rotatingSecret, secretMatcher } from './secrets.js';

describe('FileSecret', () => {
  let dir: string;
  let clock: number;
  let reloads: SecretReload[];
  let parsed: number;
  const later = () => (clock += CHECK_EVERY_MS);

  const secretAt = (path: string) =>
    new FileSecret({
      path,
      key: 'upstreams[x].passwordFile',
      parse: (text) => {
        parsed++;
        if (text.startsWith('bad')) throw new Error('line 1: not a secret');
        return text.trim();
      },
      onReload: (r) => reloads.push(r),
      now: () => clock,
    });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'secret-file-'));
    clock = 1_000_000;
    reloads = [];
    parsed = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file rewritten in place once a check is due, not before', () => {
    const path = join(dir, 'password');
    writeFileSync(path, 'first\n');
    const secret = secretAt(path);
    writeFileSync(path, 'second-one\n');
    clock += CHECK_EVERY_MS - 1;
    expect(secret.current()).toBe('first');
    later();
    expect(secret.current()).toBe('second-one');
    expect(reloads).toEqual([{ key: 'upstreams[x].passwordFile', path }]);
  });

  it('does not read an unchanged file again, and stats it at most once per interval', () => {
    const path = join(dir, 'password');
    writeFileSync(path, 'same\n');
    const secret = secretAt(path);
    for (let i = 0; i < 5; i++) {
      later();
      expect(secret.current()).toBe('same');
    }
    expect(parsed).toBe(1);
    // Removed between checks: nothing notices until the next check is due, so no stat was made.
    unlinkSync(path);
    for (let i = 0; i < 100; i++) expect(secret.current()).toBe('same');
    expect(reloads).toEqual([]);
  });

  it('follows a Kubernetes Secret volume swapping its ..data link to a new directory', () => {
    // The layout kubelet writes: <name> → ..data/<name>, ..data → a timestamped directory.
    mkdirSync(join(dir, '..2026_11_30_old'));
    writeFileSync(join(dir, '..2026_11_30_old', 'password'), 'old-pw');
    symlinkSync('..2026_11_30_old', join(dir, '..data'));
    symlinkSync(join('..data', 'password'), join(dir, 'password'));
    const secret = secretAt(join(dir, 'password'));
    expect(secret.current()).toBe('old-pw');

    mkdirSync(join(dir, '..2026_11_30_new'));
    writeFileSync(join(dir, '..2026_11_30_new', 'password'), 'new-pw');
    symlinkSync('..2026_11_30_new', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..2026_11_30_old'), { recursive: true });
    later();
    expect(secret.current()).toBe('new-pw');
  });

  it('follows a file replaced by rename, even with the same size and content length', () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'aaaa');
    const secret = secretAt(path);
    writeFileSync(`${path}.tmp`, 'bbbb');
    renameSync(`${path}.tmp`, path);
    later();
    expect(secret.current()).toBe('bbbb');
  });

  it('keeps the last good value while the file is missing, empty or bad, and tells once per change', () => {
    const path = join(dir, 'password');
    writeFileSync(path, 'good\n');
    const secret = secretAt(path);

    unlinkSync(path);
    later();
    expect(secret.current()).toBe('good');
    later();
    expect(secret.current()).toBe('good');
    expect(reloads).toEqual([{ key: 'upstreams[x].passwordFile', path, error: 'ENOENT' }]);

    writeFileSync(path, '');
    later();
    expect(secret.current()).toBe('good');
    writeFileSync(path, 'bad secret\n');
    later();
    expect(secret.current()).toBe('good');
    expect(reloads.slice(1).map((r) => r.error)).toEqual(['empty', 'line 1: not a secret']);
    expect(JSON.stringify(reloads)).not.toContain('bad secret');

    writeFileSync(path, 'better\n');
    later();
    expect(secret.current()).toBe('better');
    expect(reloads.at(-1)).toEqual({ key: 'upstreams[x].passwordFile', path });
  });

  it('checks again at once when the clock went back', () => {
    const path = join(dir, 'password');
    writeFileSync(path, 'first');
    const secret = secretAt(path);
    writeFileSync(path, 'second');
    clock -= 60_000;
    expect(secret.current()).toBe('second');
  });

  it('throws at start-up when the file cannot be read', () => {
    expect(() => secretAt(join(dir, 'missing'))).toThrow(/ENOENT/);
  });
});

describe('rotatingSecret and secretMatcher', () => {
  it('keep values as given and read a file through a FileSecret', () => {
    const dir = mkdtempSync(join(tmpdir(), 'secret-file-'));
    try {
      expect(rotatingSecret({ value: 'inline' }, 'admin.token')).toBe('inline');
      const path = join(dir, 'token');
      writeFileSync(path, 'from-file\n');
      const secret = rotatingSecret({ file: path }, 'admin.token');
      expect(typeof secret === 'function' && secret()).toBe('from-file');
      expect(() => rotatingSecret({ file: join(dir, 'missing') }, 'admin.token')).toThrow('admin.tokenFile: cannot read');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('matches a rotated secret’s new value only', () => {
    let current = 'old-token';
    const matches = secretMatcher(() => current);
    expect(matches('old-token')).toBe(true);
    current = 'new-token-longer';
    expect(matches('old-token')).toBe(false);
    expect(matches('new-token-longer')).toBe(true);
  });
});
