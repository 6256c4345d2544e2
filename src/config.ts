/**
 * The configuration file: YAML, validated once at start-up with zod so that every error
 * names the key it is about. The minimal shape from the first release must keep working
 * as the schema grows, so every new key gets a default.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { duration } from './duration.js';
import { DEFAULT_MAX_MANIFEST_BYTES } from './manifests/keys.js';
import { byteSize } from './eviction/size.js';
import { DEFAULT_MEMO_BYTES } from './memo/storage.js';
import { FILL_LIMITS_DEFAULTS } from './fill/limits.js';
import { storageSchema } from './storage-config.js';
import { replicationSchema } from './replication/config.js';

const listen = z.string().refine((v) => parseListen(v) !== undefined, {
  message: 'must be "host:port" or ":port" with a port from 0 to 65535',
});

const httpUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname.replace(/\/+$/, '') === '' && !u.search;
    } catch {
      return false;
    }
  },
  { message: 'must be an http:// or https:// origin without a path, e.g. https://registry-1.docker.io' },
);

const hostName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/i, 'must be a registry host name such as ghcr.io or registry.internal:5000');

const upstreamSchema = z
  .object({
    name: hostName.describe('the registry this upstream stands for, e.g. docker.io'),
    /** Where it is reached; `urls` lists several, tried in order (a primary and its mirrors). */
    url: httpUrl.optional(),
    urls: z.array(httpUrl).min(1).optional(),
    /** Other names clients may use for it: in `?ns=`, or as the first path segment. */
    aliases: z.array(hostName).default([]),
    /** Takes the names that name no configured registry. Without one marked, the first upstream does. */
    default: z.boolean().default(false),
    username: z.string().optional(),
    /** Prefer passwordFile or passwordEnv: a password in the config file is a password in every backup of it. */
    password: z.string().optional(),
    passwordFile: z.string().optional(),
    passwordEnv: z.string().optional(),
    /** A static bearer token sent as is, instead of any handshake. */
    token: z.string().optional(),
    tokenFile: z.string().optional(),
    tokenEnv: z.string().optional(),
    /** Fetch with each client's own credentials (clients log in to the mirror as to the registry). */
    forwardCredentials: z.boolean().default(false),
    /**
     * Serve cached content only to clients that the upstream confirms may read it (one HEAD
     * with their credentials, remembered for auth.accessTtl). Defaults to forwardCredentials.
     */
    private: z.boolean().optional(),
    timeouts: z
      .object({ connect: duration.optional(), headers: duration.optional(), body: duration.optional() })
      .strict()
      .optional(),
    health: z
      .object({
        /** Failures in a row (no answer at all) that take a URL out of rotation. */
        maxFails: z.number().int().positive().default(1),
        /** How long it stays out before one request probes it again. */
        failTimeout: duration.prefault('30s'),
      })
      .strict()
      .prefault({}),
    connections: z.number().int().positive().optional(),
  })
  .strict()
  .refine((u) => (u.url === undefined) !== (u.urls === undefined), {
    message: 'give either url or urls (one of them, not both)',
    path: ['url'],
  })
  .refine((u) => [u.password, u.passwordFile, u.passwordEnv].filter((v) => v !== undefined).length <= 1, {
    message: 'give one of password, passwordFile, passwordEnv',
    path: ['password'],
  })
  .refine((u) => (u.username === undefined) === ((u.password ?? u.passwordFile ?? u.passwordEnv) === undefined), {
    message: 'username and password go together',
    path: ['password'],
  })
  .refine((u) => [u.token, u.tokenFile, u.tokenEnv].filter((v) => v !== undefined).length <= 1, {
    message: 'give one of token, tokenFile, tokenEnv',
    path: ['token'],
  })
  .refine((u) => u.username === undefined || (u.token ?? u.tokenFile ?? u.tokenEnv) === undefined, {
    message: 'a static token replaces username and password; give one or the other',
    path: ['token'],
  })
  .transform(({ url, urls, ...rest }) => ({ ...rest, urls: urls ?? [url!], private: rest.private ?? rest.forwardCredentials }));

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

const fallbackGroupSchema = z
  .object({
    /** Upstream names, tried in this order for content addressed by digest. */
    upstreams: z.array(z.string()).min(2, 'a fallback group needs at least two upstreams'),
    /** Repository globs (upstream-side, e.g. library/*) whose tags may also resolve from later members. */
    tags: z.array(z.string().min(1)).default([]),
  })
  .strict();

export const configSchema = z
  .object({
    listen: listen.prefault('127.0.0.1:5000'),
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
    /** Replicas over shared storage: one upstream fetch per blob between them (see README, "Replicas"). Off when absent. */
    replication: replicationSchema.optional(),
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
  });

export type MirrorConfigInput = z.input<typeof configSchema>;
export type MirrorConfig = z.output<typeof configSchema>;
export type UpstreamConfig = MirrorConfig['upstreams'][number];

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
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const msg = err instanceof YAMLParseError ? err.message : String(err);
    throw new ConfigError(`${path} is not valid YAML: ${msg}`);
  }
  return parseConfig(data, path);
}

export function parseListen(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}
