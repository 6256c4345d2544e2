import { describe, expect, it } from 'vitest';
import { isProtected, pullRules } from './rules.js';

describe('pull rules', () => {
  const may = pullRules({
    anonymous: ['open.test/library/*'],
    rules: [
      { users: ['x'], repositories: ['open.test/library/small'] },
      { users: ['y', 'ci'], repositories: ['open.test/library/medium', 'other.test/**'] },
      { users: ['*'], repositories: ['open.test/public/**'] },
    ],
  });

  it('gives anonymous clients what `anonymous` names, and users what their rules and `*` name', () => {
    expect(may(undefined, 'open.test/library/small')).toBe(true);
    expect(may(undefined, 'open.test/library/deep/er')).toBe(false);
    expect(may(undefined, 'open.test/public/app')).toBe(false);
    expect(may('x', 'open.test/library/small')).toBe(true);
    expect(may('x', 'open.test/library/medium')).toBe(false);
    expect(may('y', 'open.test/library/medium')).toBe(true);
    expect(may('y', 'other.test/a/b/c')).toBe(true);
    expect(may('x', 'open.test/public/app')).toBe(true);
    expect(may('nobody', 'open.test/library/small')).toBe(false);
  });

  it('without rules lets every named client pull everything, and anonymous ones nothing unless named', () => {
    expect(pullRules({})('x', 'any.test/thing')).toBe(true);
    expect(pullRules({})(undefined, 'any.test/thing')).toBe(false);
  });

  it('applies only where clients log in to the mirror', () => {
    expect(isProtected({ tokens: [] })).toBe(false);
    expect(isProtected({ htpasswd: '/etc/htpasswd', tokens: [] })).toBe(true);
    expect(isProtected({ tokens: [{ name: 'ci' }] })).toBe(true);
  });
});
