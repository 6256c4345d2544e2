/**
 * The admin subcommands of `oci-mirror`: warm, ls, purge and gc. Each runs in this process
 * on the storage the config names; no server is needed. They skip start-up recovery and
 * eviction, so they are safe beside a server on the same storage (whose fills in progress
 * recovery would remove); `gc` makes its one eviction pass itself. While a server runs,
 * prefer its admin API for purge and gc: its eviction then learns of what they removed.
 *
 * Exit codes: 0 done, 1 something failed (each failure is named on stderr), 2 bad usage or config.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfigFile, parseConfig, type MirrorConfig } from '../config.js';
import { count, formatBytes, formatTable } from './format.js';
import { gc } from './gc.js';
import { parsePlatform, type Platform } from './image-ref.js';
import { listCached, type CachedImage } from './list.js';
import { plainReporter, ttyReporter, type Output } from './progress.js';
import { purge } from './purge.js';
import { describeError, warmImages, type WarmDeps } from './warm.js';
import type { EvictionTurns } from '../eviction/index.js';

export const ADMIN_COMMANDS = ['warm', 'ls', 'purge', 'gc'] as const;
export type AdminCommand = (typeof ADMIN_COMMANDS)[number];

export const isAdminCommand = (s: string | undefined): s is AdminCommand => (ADMIN_COMMANDS as readonly string[]).includes(s ?? '');

export const ADMIN_USAGE = `       oci-mirror warm [--config FILE] [--file LIST] [--platform OS/ARCH ...] [--concurrency N] IMAGE...
       oci-mirror ls [--config FILE] [--json]
       oci-mirror purge [--config FILE] [--json] REPOSITORY[:TAG]...
       oci-mirror gc [--config FILE] [--json]

  warm      fill the cache ahead of time: every platform of a multi-arch image unless --platform
            is given; IMAGE is name[:tag|@digest], with an optional registry prefix (ghcr.io/org/app:1.0);
            --file reads more images, one a line (# starts a comment)
  ls        what is cached: repository, tag, digest, size, last access, whether it is complete
  purge     forget a repository (every tag) or one tag, and remove what no other image still uses
  gc        one reconciliation and eviction pass now
`;

export interface AdminIo {
  stdout: Output & { isTTY?: boolean };
  stderr: Output;
}

const COMMON = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const WARM = {
  ...COMMON,
  file: { type: 'string', short: 'f', multiple: true },
  platform: { type: 'string', short: 'p', multiple: true },
  concurrency: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

class UsageError extends Error {}

/**
 * What the admin commands need of a mirror over the config's storage and upstreams. The CLI
 * entry point opens one (createMirror, without maintenance: a running server may share the store).
 */
export interface AdminMirror extends WarmDeps {
  readonly config: MirrorConfig;
  readonly evictionTurns: EvictionTurns | undefined;
  close(graceMs?: number): Promise<void>;
}

export async function runAdminCommand(command: AdminCommand, argv: string[], open: (config: MirrorConfig) => AdminMirror, io: AdminIo = process): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: command === 'warm' ? WARM : COMMON, allowPositionals: true, strict: true });
  } catch (err) {
    io.stderr.write(`oci-mirror ${command}: ${(err as Error).message}\nUsage: ${ADMIN_USAGE.trimStart()}`);
    return 2;
  }
  const values = parsed.values as { config?: string; json?: boolean; help?: boolean; file?: string[]; platform?: string[]; concurrency?: string };
  if (values.help) {
    io.stdout.write(`Usage: ${ADMIN_USAGE.trimStart()}`);
    return 0;
  }
  let config: MirrorConfig;
  let mirror: AdminMirror;
  try {
    config = values.config ? await loadConfigFile(values.config) : parseConfig({});
    // Secrets and htpasswd files are read here: a missing one is a config error too.
    mirror = open(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(`oci-mirror: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  try {
    switch (command) {
      case 'warm':
        return await warm(mirror, parsed.positionals, values, io);
      case 'ls':
        return await list(mirror, parsed.positionals, values, io);
      case 'purge':
        return await purgeAll(mirror, parsed.positionals, values, io);
      case 'gc':
        return await collect(mirror, parsed.positionals, values, io);
    }
  } catch (err) {
    io.stderr.write(`oci-mirror ${command}: ${describeError(err)}\n`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    await mirror.close(1000);
  }
}

async function warm(mirror: AdminMirror, positionals: string[], values: { file?: string[]; platform?: string[]; concurrency?: string }, io: AdminIo): Promise<number> {
  const images = [...positionals];
  for (const file of values.file ?? []) images.push(...parseImageList(await readFile(file, 'utf8')));
  if (images.length === 0) throw new UsageError('name at least one image (or --file LIST)');
  let platforms: Platform[];
  try {
    platforms = (values.platform ?? []).map(parsePlatform);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const concurrency = values.concurrency === undefined ? 3 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) throw new UsageError('--concurrency must be a whole number from 1 to 32');
  const reporter = io.stdout.isTTY ? ttyReporter(io.stdout, io.stderr, images.length) : plainReporter(io.stdout, io.stderr);
  const report = await warmImages(mirror, images, { platforms, concurrency, onEvent: (e) => reporter.onEvent(e) });
  reporter.finish(report);
  return report.failures.length ? 1 : 0;
}

/** One image a line; blank lines and `#` comments are skipped. */
export function parseImageList(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean);
}

async function list(mirror: AdminMirror, positionals: string[], values: { json?: boolean }, io: AdminIo): Promise<number> {
  if (positionals.length) throw new UsageError('ls takes no arguments');
  const images = await listCached({ storage: mirror.storage, maxManifestBytes: mirror.config.cache.maxManifestBytes });
  if (values.json) io.stdout.write(`${JSON.stringify({ images }, null, 2)}\n`);
  else io.stdout.write(images.length ? formatImages(images) : 'nothing is cached\n');
  return 0;
}

export function formatImages(images: readonly CachedImage[]): string {
  return formatTable(
    ['REPOSITORY', 'TAG', 'DIGEST', 'SIZE', 'LAST ACCESS', 'PLATFORMS', 'CACHED'],
    images.map((i) => [
      `${i.upstream}/${i.repository}`,
      i.tag,
      i.digest.slice(0, i.digest.indexOf(':') + 13),
      formatBytes(i.size),
      i.lastAccess ? new Date(i.lastAccess).toISOString().replace(/\.\d+Z$/, 'Z') : '-',
      i.platforms.join(',') || '-',
      i.complete ? 'complete' : `partial: ${i.manifests.cached}/${i.manifests.total} manifests, ${i.blobs.cached}/${i.blobs.total} blobs`,
    ]),
  );
}

async function purgeAll(mirror: AdminMirror, positionals: string[], values: { json?: boolean }, io: AdminIo): Promise<number> {
  if (positionals.length === 0) throw new UsageError('name a repository or repository:tag to purge');
  let failed = 0;
  const results = [];
  for (const reference of positionals) {
    try {
      const deps = { storage: mirror.storage, routing: mirror.routing, events: mirror.events, maxManifestBytes: mirror.config.cache.maxManifestBytes };
      const r = await purge(deps, reference);
      results.push({ reference, ...r });
      if (!values.json) {
        io.stdout.write(
          `purged ${reference}: ${count(r.tags.length, 'tag')}, ${count(r.manifests, 'manifest')}, ${count(r.blobs, 'blob')}, ${formatBytes(r.bytes)}` +
            `${r.kept ? `; kept ${r.kept} still used by other images or in use` : ''}\n`,
        );
      }
    } catch (err) {
      failed++;
      io.stderr.write(`oci-mirror purge ${reference}: ${describeError(err)}\n`);
    }
  }
  if (values.json) io.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
  return failed ? 1 : 0;
}

async function collect(mirror: AdminMirror, positionals: string[], values: { json?: boolean }, io: AdminIo): Promise<number> {
  if (positionals.length) throw new UsageError('gc takes no arguments');
  const r = await gc({ storage: mirror.storage, events: mirror.events, fills: mirror.fills, cache: mirror.config.cache, turns: mirror.evictionTurns });
  if (values.json) {
    io.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const { manifests, access, tags, links } = r.reconciled;
  io.stdout.write(`reconciled: removed ${manifests} manifest, ${access} access, ${tags} tag and ${links} link records whose content was gone\n`);
  io.stdout.write(
    r.elsewhere
      ? 'evicted nothing: a replica is evicting right now (run gc again later)\n'
      : r.eviction
      ? `evicted ${count(r.evicted, 'object')}, ${formatBytes(r.bytes)}${r.more ? ' (the batch limit stopped the pass: run gc again for more)' : ''}\n`
      : 'eviction is off (set cache.maxBytes or cache.ttl): nothing evicted\n',
  );
  return 0;
}
