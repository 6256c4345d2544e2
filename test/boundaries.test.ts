/**
 * The house's dependency rules, checked rather than remembered (go-containerregistry keeps its
 * budget the same way, in depcheck_test.go). Imports point down only:
 *
 *   src/index.ts, src/cli.ts, src/server.ts   entry points
 *   middleware/mirror/                         the composition root
 *   middleware/<name>/                         thin koa adapters
 *   src/<domain>/                              the domain, no koa
 *   adapters/<backend>/                        storage backends
 *
 * Each rule is a function over a map of files to their imports, so that the last test can show
 * every rule failing on a tree made to break it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const ENTRY_POINTS = new Set(['src/index.ts', 'src/cli.ts', 'src/server.ts']);
const KOA = /^(koa|@koa\/.*|koa-compose)$/;

/** Repository-relative path → its import specifiers (static, re-exports, side-effect and dynamic). */
type Tree = Map<string, string[]>;

function readTree(): Tree {
  const tree: Tree = new Map();
  for (const dir of ['src', 'middleware', 'adapters']) {
    for (const e of readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.test.ts')) continue;
      const file = join(e.parentPath, e.name);
      tree.set(relative(ROOT, file), importsOf(readFileSync(file, 'utf8')));
    }
  }
  return tree;
}

function importsOf(text: string): string[] {
  const found = text.matchAll(/(?:^|\n)\s*(?:import|export)[^'";]*?from\s+['"]([^'"]+)['"]|(?:^|\n)\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g);
  return [...found].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** The repository-relative file a relative import names; undefined for a package. */
function resolved(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  return normalize(join(dirname(from), specifier)).replace(/\.js$/, '.ts');
}

type Rule = (tree: Tree) => string[];

const each = (tree: Tree, where: (file: string) => boolean, broken: (file: string, specifier: string) => string | undefined): string[] =>
  [...tree].filter(([file]) => where(file)).flatMap(([file, specifiers]) => specifiers.flatMap((s) => broken(file, s) ?? []));

const rules: Record<string, Rule> = {
  'adapters never import koa or the middlewares': (tree) =>
    each(
      tree,
      (f) => f.startsWith('adapters/'),
      (f, s) => (KOA.test(s) || resolved(f, s)?.startsWith('middleware/') ? `${f} imports ${s}: a storage adapter knows nothing of HTTP serving` : undefined),
    ),
  'middleware never imports a storage backend or the AWS SDK': (tree) =>
    each(
      tree,
      (f) => f.startsWith('middleware/'),
      (f, s) =>
        /^@aws-sdk\/|^@keyv\/|^keyv$/.test(s) || resolved(f, s)?.startsWith('adapters/')
          ? `${f} imports ${s}: a middleware reaches storage through the contract in src/storage.ts, never a backend`
          : undefined,
    ),
  'src never imports middleware or koa, but for the entry points': (tree) =>
    each(
      tree,
      (f) => f.startsWith('src/') && !ENTRY_POINTS.has(f),
      (f, s) =>
        KOA.test(s) || resolved(f, s)?.startsWith('middleware/')
          ? `${f} imports ${s}: src/ is the domain; only ${[...ENTRY_POINTS].join(', ')} may reach up into koa and middleware/`
          : undefined,
    ),
  'no import cycles between files': (tree) => cycles(tree).map((c) => `import cycle: ${c.join(' → ')}`),
};

/** Every cycle, each reported once from its smallest file name. */
function cycles(tree: Tree): string[][] {
  const found = new Map<string, string[]>();
  const edges = (f: string) => (tree.get(f) ?? []).map((s) => resolved(f, s)).filter((t): t is string => t !== undefined && tree.has(t));
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    path.push(f);
    for (const next of edges(f)) {
      if (state.get(next) === 'open') {
        const cycle = path.slice(path.indexOf(next));
        const start = cycle.indexOf([...cycle].sort()[0]!);
        const canonical = [...cycle.slice(start), ...cycle.slice(0, start)];
        found.set(canonical.join('|'), [...canonical, canonical[0]!]);
      } else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of [...tree.keys()].sort()) if (!state.has(f)) visit(f);
  return [...found.values()];
}

describe('dependency boundaries', () => {
  const tree = readTree();

  it.each(Object.keys(rules))('%s', (name) => {
    expect(rules[name]!(tree)).toEqual([]);
  });

  it('the checks see imports at all', () => {
    expect(tree.get('middleware/mirror/index.ts')).toContain('koa-compose');
    expect(tree.get('middleware/blob-cache/index.ts')).toContain('../shared/state.js');
    expect(tree.size).toBeGreaterThan(100);
  });

  it('each rule fails, naming the import and the rule, on a tree made to break it', () => {
    const broken: Tree = new Map([
      ['adapters/fs/index.ts', ['koa', '../../middleware/blob-cache/index.js']],
      ['middleware/blob-cache/index.ts', ['@aws-sdk/client-s3', '../../adapters/s3/index.js']],
      ['src/fill/fill.ts', ['koa', '../../middleware/blob-cache/index.js', './reader.js']],
      ['src/fill/reader.ts', ['./fill.js']],
      ['src/server.ts', ['koa', '../middleware/mirror/index.js']],
    ]);
    expect(rules['adapters never import koa or the middlewares']!(broken)).toEqual([
      'adapters/fs/index.ts imports koa: a storage adapter knows nothing of HTTP serving',
      'adapters/fs/index.ts imports ../../middleware/blob-cache/index.js: a storage adapter knows nothing of HTTP serving',
    ]);
    expect(rules['middleware never imports a storage backend or the AWS SDK']!(broken)).toHaveLength(2);
    expect(rules['src never imports middleware or koa, but for the entry points']!(broken)).toEqual([
      expect.stringMatching(/^src\/fill\/fill\.ts imports koa: src\/ is the domain/),
      expect.stringMatching(/^src\/fill\/fill\.ts imports \.\.\/\.\.\/middleware\/blob-cache\/index\.js: src\/ is the domain/),
    ]);
    expect(rules['no import cycles between files']!(broken)).toEqual(['import cycle: src/fill/fill.ts → src/fill/reader.ts → src/fill/fill.ts']);
  });
});
