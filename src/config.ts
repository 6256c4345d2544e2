/**
 * The configuration file: YAML, validated once at start-up with zod so that every error
 * names the key it is about. The minimal shape from the first release must keep working
 * as the schema grows, so every new key gets a default.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { z } from 'zod';
import { duration } from './duration.js';
import { DEFAULT_MAX_MANIFEST_BYTES } from './manifests/keys.js';
import { byteSize } from './eviction/size.js';
import { DEFAULT_MEMO_BYTES } from './memo/storage.js';
import { FILL_LIMITS_DEFAULTS } from './fill/limits.js';
import { storageSchema } from './storage-config.js';
import { replicationSchema } from './replication/config.js';
import { parseWorkersFlag, WORKERS_EXPECTED, workersProblems, workersSchema } from './cluster/config.js';
import { fallbackGroupSchema, upstreamSchema } from './upstream/config.js';
import { listenerTls } from './listener/config.js';

/** A remembered 404 hides a tag pushed meanwhile: it is meant to last seconds. */
const MAX_NEGATIVE_TTL = 3_600_000;

const listen = z.string().refine((v) => parseListen(v) !== undefined, {
  message: 'must be "host:port" or ":port" with a port from 0 to 65535',
});

const authSchema = z
  .object({
    /** An htpasswd file with bcrypt entries (htpasswd -B): the mirror's own users. */
    htpasswd: z.string().optional(),
    /** Static bearer tokens, for scripts: `Authorization: Bearer <token>`. */
    tokens: z
      .array(
        z
          .object({ name: z.string().min(1), token: z.string().min(16).optional(), tokenFile: z.string().optional(), tokenEnv: z.string().optional() })
          .strict()
          .refine((t) => [t.token, t.tokenFile, t.tokenEnv].filter((v) => v !== undefined).length === 1, {
            message: 'give exactly one of token, tokenFile, tokenEnv',
          }),
      )
      .default([]),
    /** Repository globs (`<registry>/<repository>`) anonymous clients may pull. */
    anonymous: z.array(z.string().min(1)).default([]),
    /** Who may pull what; without rules every authenticated client may pull everything. */
    rules: z
      .array(z.object({ users: z.array(z.string().min(1)).min(1), repositories: z.array(z.string().min(1)).min(1) }).strict())
      .optional(),
    /** How long an upstream's "yes, this client may read this repository" is trusted. */
    accessTtl: duration.prefault('60s'),
  })
  .strict();

export const configSchema = z
  .object({
    listen: listen.prefault('127.0.0.1:5000'),
    /** HTTPS on `listen`, the files reloaded when they change (see README, "Proxies and TLS"). Plain HTTP when absent. */
    tls: listenerTls.optional(),
    storage: storageSchema.prefault({ type: 'fs', path: './data' }),
    upstreams: z
      .array(upstreamSchema)
      .min(1, 'needs at least one upstream')
      .prefault([{ name: 'docker.io', url: 'https://registry-1.docker.io' }])
      .superRefine((upstreams, ctx) => {
        const seen = new Map<string, string>();
        upstreams.forEach((u, i) => {
          for (const host of [u.name, ...u.aliases].map((h) => h.toLowerCase())) {
            const other = seen.get(host);
            if (other !== undefined && other !== u.name) {
              ctx.addIssue({ code: 'custom', path: [i, 'aliases'], message: `"${host}" already names upstream ${other}` });
            }
            seen.set(host, u.name);
          }
        });
        if (upstreams.filter((u) => u.default).length > 1) {
          ctx.addIssue({ code: 'custom', message: 'only one upstream can have default: true' });
        }
      }),
    fallbackGroups: z.array(fallbackGroupSchema).default([]),
    auth: authSchema.prefault({}),
    cache: z
      .object({
        /** How long a tag maps to a digest before it is revalidated upstream with a HEAD. */
        tagTtl: duration.prefault('5m'),
        /**
         * How long an upstream 404 for a tag is answered without asking again (0: never). Off by
         * default: a tag pushed upstream just after a miss is then visible on the next pull.
         */
        negativeTtl: duration.prefault('0s').refine((ms) => ms <= MAX_NEGATIVE_TTL, { message: 'must be at most 1h: a remembered 404 hides a new tag that long' }),
        /**
         * Memory for hot tag, manifest and link records, blob sizes and small blobs (manifests,
         * configs), so that a warm manifest or small blob costs no file open (bytes, or e.g. 16MiB; 0: off).
         */
        memoBytes: byteSize.default(DEFAULT_MEMO_BYTES),
        /** Manifests larger than this are refused (the spec suggests registries accept at least 4 MiB). */
        maxManifestBytes: z.number().int().positive().default(DEFAULT_MAX_MANIFEST_BYTES),
        /** Evict the least recently used content while storage holds more than this (bytes, or e.g. 50GiB). Unset: no limit. */
        maxBytes: byteSize.optional(),
        /** Evict content not pulled for this long; a pull refreshes it. Unset: content stays until maxBytes needs the room. */
        ttl: duration.optional(),
        /** How often eviction looks for work (only with maxBytes or ttl). */
        evictionInterval: duration.prefault('1m'),
        /** The most objects one eviction pass removes; the rest waits for the next pass. */
        evictionBatch: z.number().int().positive().default(1000),
        /** When a client pulls one platform of an index, fill the index's other platforms in the background. */
        prefetchPlatforms: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    fill: z
      .object({
        /** The longest a blob fill may take, whoever is waiting for it. */
        timeout: duration.prefault('1h'),
        /** Where in-progress fills spool when the blob store has no local spool of its own. */
        spoolDir: z.string().optional(),
        /** Blobs larger than this are refused, and a body without a declared size is cut at it (bytes, or e.g. 20GiB). */
        maxBlobBytes: byteSize.refine((n) => n > 0, { message: 'must be more than 0' }).default(FILL_LIMITS_DEFAULTS.maxBlobBytes),
        /** Space fills leave free on the spool's file system: a fill that would eat into it is refused with 507. */
        reserveBytes: byteSize.default(FILL_LIMITS_DEFAULTS.reserveBytes),
      })
      .strict()
      .prefault({}),
    /** How long SIGTERM waits for fills in flight before exiting. */
    shutdownGrace: duration.prefault('30s'),
    /**
     * Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client in access lines;
     * from anyone else the header is ignored. None by default.
     */
    trustedProxies: z.array(z.string().refine(isAddressOrRange, { message: 'must be an IP address or a CIDR range' })).default([]),
    /** Replicas over shared storage: one upstream fetch per blob between them (see README, "Replicas"). Off when absent. */
    replication: replicationSchema.optional(),
    /** Processes serving `listen` together: a number, or `auto` for one per core (see README, "Running"). One by default. */
    workers: workersSchema.default(1),
    /** The status page at /_mirror/: hit ratio and bytes over time, upstream health, fills in flight, largest and most pulled repositories. */
    status: z
      .object({
        enabled: z.boolean().default(true),
        /** How often the charts' counters are sampled. */
        sampleInterval: duration.prefault('10s').refine((ms) => ms >= 100, { message: 'must be at least 100ms' }),
        /** Samples the charts keep (360 at 10s: an hour). */
        points: z.number().int().min(2).max(100_000).default(360),
      })
      .strict()
      .prefault({}),
    /** The HTTP admin API under /_mirror/admin/ (ls, purge, gc, warm): off unless enabled, and then behind a bearer token. */
    admin: z
      .object({
        enabled: z.boolean().default(false),
        token: z.string().min(16, 'must be at least 16 characters').optional(),
        tokenFile: z.string().optional(),
        tokenEnv: z.string().optional(),
      })
      .strict()
      .refine((a) => [a.token, a.tokenFile, a.tokenEnv].filter((v) => v !== undefined).length <= 1, {
        message: 'give one of token, tokenFile, tokenEnv',
        path: ['token'],
      })
      .refine((a) => !a.enabled || (a.token ?? a.tokenFile ?? a.tokenEnv) !== undefined, {
        message: 'an enabled admin API needs a token (token, tokenFile or tokenEnv)',
        path: ['token'],
      })
      .prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    const names = new Set(config.upstreams.map((u) => u.name));
    config.fallbackGroups.forEach((g, i) => {
      g.upstreams.forEach((n, j) => {
        if (!names.has(n)) ctx.addIssue({ code: 'custom', path: ['fallbackGroups', i, 'upstreams', j], message: `no upstream is named "${n}"` });
      });
    });
    for (const { path, message } of workersProblems(config)) ctx.addIssue({ code: 'custom', path: path.split('.'), message });
  });

export type MirrorConfigInput = z.input<typeof configSchema>;
export type MirrorConfig = z.output<typeof configSchema>;
export type UpstreamConfig = MirrorConfig['upstreams'][number];

/** The config with `workers` as the `--workers` flag says, checked as the key would be. */
export function withWorkers(config: MirrorConfig, flag: string): MirrorConfig {
  const workers = parseWorkersFlag(flag);
  if (workers === undefined) throw new ConfigError(`--workers: ${WORKERS_EXPECTED}, not "${flag}"`);
  const next = { ...config, workers };
  const problems = workersProblems(next).map((p) => `${p.path}: ${p.message}`);
  if (problems.length) throw new ConfigError(`--workers ${flag} does not fit the config:\n  ${problems.join('\n  ')}`, problems);
  return next;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly problems: string[] = [message],
  ) {
    super(message);
  }
}

/** Validates an object (from YAML or from code); throws ConfigError naming every bad key. */
export function parseConfig(input: unknown, source = 'config'): MirrorConfig {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.length ? formatPath(issue.path) : '(top level)';
    return `${key}: ${issue.message}`;
  });
  throw new ConfigError(`${source} is invalid:\n  ${problems.join('\n  ')}`, problems);
}

export async function loadConfigFile(path: string): Promise<MirrorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  // Loaded only for a file: the embedded default config (no file) does without the parser.
  const { parse: parseYaml, YAMLParseError } = await import('yaml');
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const msg = err instanceof YAMLParseError ? err.message : String(err);
    throw new ConfigError(`${path} is not valid YAML: ${msg}`);
  }
  return parseConfig(data, path);
}

/**
 * `host:port`, `[ipv6]:port`, or `:port` for every interface, which has no `host`: Node then
 * listens on IPv6 and IPv4 at once where the machine has IPv6, and on IPv4 where it has not
 * (see startServer). An explicit `0.0.0.0` or `[::1]` keeps meaning just that.
 */
export function parseListen(value: string): { host?: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return host === '' ? { port } : { host, port };
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

function isAddressOrRange(value: string): boolean {
  const [address, bits, extra] = value.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (family === 4 ? 32 : 128);
}
