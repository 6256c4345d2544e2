/**
 * The real clients and servers the end-to-end tests drive, and the checks of what they pulled.
 * A missing binary skips the suite on a developer's machine and fails it in CI (CI=true),
 * each time saying what to install.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { it } from 'vitest';
import type { Descriptor, Fixture } from './images.js';
import { describeExit, spawnTracked, terminate } from './processes.js';

export const INSTALL_HINT = 'apt-get install docker-registry skopeo';

/** The absolute path of `name` on PATH (and the sbin dirs, where Debian puts nginx), or undefined. */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Call at the top of a test file (collection time). Returns true when `name` is installed.
 * When it is not: with CI=true it registers a test that fails saying what to install;
 * otherwise it warns and registers a skipped test with the same message. Guard the suite
 * with `describe.skipIf(!requireTool(...))`.
 */
export function requireTool(name: string, hint: string = INSTALL_HINT): boolean {
  if (which(name)) return true;
  const message = `${name} is not installed; install it with: ${hint}`;
  if (process.env.CI === 'true') {
    it(`requires ${name}`, () => {
      throw new Error(message);
    });
  } else {
    console.warn(`skipping: ${message}`);
    it.skip(`requires ${name} (${hint})`, () => {});
  }
  return false;
}

/** `requireTool` for each name (every missing one is reported); true when all are installed. */
export function requireTools(names: readonly string[], hint: string = INSTALL_HINT): boolean {
  return names.map((n) => requireTool(n, hint)).every(Boolean);
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * Runs a command to completion. Throws, with the tail of its output, when it exits non-zero
 * or outlives `timeoutMs` (it is then killed).
 */
export async function run(command: string, args: readonly string[], { timeoutMs = 120_000 } = {}): Promise<CommandResult> {
  const started = Date.now();
  const proc = spawnTracked(command, args, { keepAll: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void terminate(proc, 2_000);
  }, timeoutMs);
  const exit = await proc.exited.finally(() => clearTimeout(timer));
  const result = { stdout: proc.stdout(), stderr: proc.stderr(), durationMs: Date.now() - started };
  if (timedOut || exit.code !== 0) {
    const why = timedOut ? `timed out after ${timeoutMs} ms` : describeExit(exit);
    throw new Error(`${command} ${args.join(' ')} ${why}:\n${proc.output()}`);
  }
  return result;
}

export interface SkopeoCopyOptions {
  /** Copy every image of an index or manifest list (`--all`); otherwise skopeo picks the host's platform. */
  all?: boolean;
  /** `USER:PASSWORD` for the source; anonymous (`--src-no-creds`) when absent. */
  creds?: string;
  /** The destination transport: `dir:` (default; keeps every manifest byte for byte) or an `oci:` layout. */
  transport?: 'dir' | 'oci';
  /** Default 45 s, under vitest's 60 s test timeout so that the error is skopeo's. */
  timeoutMs?: number;
  /**
   * HTTPS, with the source's certificate verified against the CA certificates (`ca.crt`) in
   * this directory; without it, TLS verification is off, as for a plain-HTTP mirror.
   */
  certDir?: string;
}

/**
 * `skopeo copy docker://SRC dir:DEST`, over plain HTTP unless `certDir` is given. `srcRef` is
 * `HOST/NAME:TAG` or `HOST/NAME@DIGEST`, with or without `docker://`.
 */
export function skopeoCopy(srcRef: string, destDir: string, options: SkopeoCopyOptions = {}): Promise<CommandResult> {
  const { all = false, creds, transport = 'dir', timeoutMs = 45_000, certDir } = options;
  const src = srcRef.startsWith('docker://') ? srcRef : `docker://${srcRef}`;
  const args = [
    '--insecure-policy',
    'copy',
    ...(certDir === undefined ? ['--src-tls-verify=false'] : ['--src-cert-dir', certDir]),
    ...(creds === undefined ? ['--src-no-creds'] : ['--src-creds', creds]),
    ...(all ? ['--all'] : []),
    src,
    `${transport}:${destDir}`,
  ];
  return run('skopeo', args, { timeoutMs });
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

function hexOf(digest: string): string {
  if (!digest.startsWith('sha256:')) throw new Error(`only sha256 digests are checked, got ${digest}`);
  return digest.slice('sha256:'.length);
}

/** Checks that `path` holds exactly `expected`'s bytes. */
async function checkFile(path: string, expected: Pick<Descriptor, 'digest' | 'size'>, what: string): Promise<void> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    throw new Error(`${what} ${expected.digest} is missing: no ${path}`);
  }
  if (size !== expected.size) throw new Error(`${what} ${expected.digest} has ${size} bytes at ${path}, expected ${expected.size}`);
  const actual = await sha256File(path);
  if (actual !== expected.digest) throw new Error(`${what} at ${path} has digest ${actual}, expected ${expected.digest}`);
}

/** The child manifests that a pull of `fixture` must contain: all of them with --all, else the host's. */
function expectedImages(fixture: Fixture, all: boolean): Fixture['images'] {
  if (!fixture.multiPlatform || all) return fixture.images;
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  return fixture.images.filter((i) => i.platform.architecture === arch).slice(0, 1);
}

/**
 * Checks a skopeo `dir:` pull: `manifest.json` is the fixture's manifest byte for byte,
 * every child manifest (for an index pulled with `all`) is there as `<hex>.manifest.json`,
 * every blob is there as `<hex>` with its size and sha256, and nothing else is.
 * Without `all`, a multi-platform pull is a single image, so its manifest.json is that image's.
 */
export async function verifyDirPull(dir: string, fixture: Fixture, { all = true }: { all?: boolean } = {}): Promise<void> {
  const images = expectedImages(fixture, all);
  const single = fixture.multiPlatform && !all;
  const top = single ? images[0] : fixture;
  if (!top) throw new Error(`${fixture.ref} has no image for this platform`);
  const expected = new Map<string, () => Promise<void>>();
  const want = (file: string, d: Pick<Descriptor, 'digest' | 'size'>, what: string): void => {
    if (!expected.has(file)) expected.set(file, () => checkFile(join(dir, file), d, `${fixture.ref}: ${what}`));
  };
  want('manifest.json', top, 'manifest');
  if (fixture.multiPlatform && all) for (const i of images) want(`${hexOf(i.digest)}.manifest.json`, i, 'child manifest');
  for (const i of images) for (const b of [i.config, ...i.layers]) want(hexOf(b.digest), b, `blob (${b.mediaType})`);
  const version = (await readFile(join(dir, 'version'), 'utf8')).trim();
  if (!version.startsWith('Directory Transport Version')) throw new Error(`${dir}/version says "${version}"`);
  const extra = (await readdir(dir)).filter((f) => f !== 'version' && !expected.has(f));
  if (extra.length) throw new Error(`${fixture.ref}: unexpected files in ${dir}: ${extra.join(', ')}`);
  await Promise.all([...expected.values()].map((check) => check()));
}

/**
 * Checks a skopeo `oci:` pull of an OCI fixture: `index.json` points at the fixture's manifest
 * and every blob under `blobs/sha256/` has the digest of its name; the fixture's manifests and
 * blobs are all there. skopeo converts Docker manifests and lists to OCI on the way into an
 * `oci:` layout, which changes their digests, so Docker fixtures are checked with `dir:` only.
 */
export async function verifyOciPull(dir: string, fixture: Fixture): Promise<void> {
  if (!fixture.mediaType.startsWith('application/vnd.oci.')) {
    throw new Error(`${fixture.ref} is ${fixture.mediaType}: skopeo rewrites it into OCI in an oci: layout; check it with dir:`);
  }
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests?: { digest?: string }[] };
  const digests = (index.manifests ?? []).map((m) => m.digest);
  if (!digests.includes(fixture.digest)) {
    throw new Error(`${fixture.ref}: ${dir}/index.json lists ${digests.join(', ')}, not ${fixture.digest}`);
  }
  const blobDir = join(dir, 'blobs', 'sha256');
  const present = new Set(await readdir(blobDir));
  const needed = [fixture, ...(fixture.multiPlatform ? fixture.images : []), ...fixture.blobs];
  const missing = needed.filter((d) => !present.has(hexOf(d.digest))).map((d) => d.digest);
  if (missing.length) throw new Error(`${fixture.ref}: ${blobDir} lacks ${missing.join(', ')}`);
  await Promise.all(
    [...present].map(async (hex) => {
      const actual = await sha256File(join(blobDir, hex));
      if (actual !== `sha256:${hex}`) throw new Error(`${blobDir}/${hex} has digest ${actual}`);
    }),
  );
}
