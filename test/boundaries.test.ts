/**
 * The house's dependency rules, checked rather than remembered (go-containerregistry keeps
 * its budget the same way): storage adapters know nothing of HTTP serving, middlewares
 * nothing of a particular storage backend, and the protocol core neither.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
    (m) => m[1] ?? m[2]!,
  );
}

const offenders = (dir: string, banned: RegExp) =>
  sources(dir).flatMap((f) => imports(f).filter((i) => banned.test(i)).map((i) => `${f.slice(ROOT.length + 1)} imports ${i}`));

describe('dependency boundaries', () => {
  it('adapters/ never imports koa or the middlewares', () => {
    expect(offenders('adapters', /^(koa|@koa\/|koa-compose)$|\/middleware\//)).toEqual([]);
  });

  it('middleware/ never imports a storage backend', () => {
    expect(offenders('middleware', /^@aws-sdk\/|^@keyv\/|^keyv$|\/adapters\//)).toEqual([]);
  });

  it('the fill engine and the upstream client never import koa', () => {
    expect([...offenders('src/fill', /^(koa|@koa\/)/), ...offenders('src/upstream', /^(koa|@koa\/)/)]).toEqual([]);
  });

  it('the pull rules and the status collector never import koa or the middlewares', () => {
    expect([...offenders('src/access', /^(koa|@koa\/|koa-compose)$|\/middleware\//), ...offenders('src/status', /^(koa|@koa\/|koa-compose)$|\/middleware\//)]).toEqual([]);
  });

  it('the checks see imports at all', () => {
    expect(imports(join(ROOT, 'src', 'mirror.ts'))).toContain('koa-compose');
  });
});
