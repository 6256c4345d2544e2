/** The config of one upstream and of the fallback groups between upstreams (see src/config.ts for the whole file). */
import { z } from 'zod';
import { duration } from '../duration.js';
import { upstreamProxy, upstreamTls } from './egress-config.js';

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

/**
 * A glob on a repository as its upstream names it. No tags: a tag filter would not hold, since
 * the same manifest and blobs can be pulled by digest, which names no tag.
 */
const repositoryGlob = z
  .string()
  .min(1)
  .refine((v) => !v.includes(':') && !v.includes('@'), {
    message: 'must be a repository glob such as library/* without a tag or digest (tags cannot be filtered: a pull by digest names none)',
  });

export const upstreamSchema = z
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
        /** How long it stays out before one request probes it again, while other URLs of the upstream serve. */
        failTimeout: duration.prefault('30s'),
        /** How soon it is probed again when no URL of the upstream is in rotation (a single URL that failed). */
        probeInterval: duration.prefault('1s'),
      })
      .strict()
      .prefault({}),
    /** After a 429: how long the upstream gets no requests when it sends no Retry-After, and the most any Retry-After can ask. */
    rateLimit: z
      .object({ backoff: duration.prefault('60s'), maxBackoff: duration.prefault('1h') })
      .strict()
      .prefault({}),
    connections: z.number().int().positive().optional(),
    /** A forward proxy (`http://proxy:3128`), or `none`; absent: HTTPS_PROXY / HTTP_PROXY / NO_PROXY decide. */
    proxy: upstreamProxy.optional(),
    /** CA, client certificate, SNI name for the upstream's own host (see README, "Proxies and TLS"). */
    tls: upstreamTls.optional(),
    /** Repository globs (as this upstream names them, e.g. library/*) that are mirrored; absent: all of them. */
    allow: z.array(repositoryGlob).min(1, 'an empty allow list mirrors nothing; leave allow out to mirror every repository').optional(),
    /** Repository globs never mirrored, whatever allow says. */
    deny: z.array(repositoryGlob).default([]),
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

export const fallbackGroupSchema = z
  .object({
    /** Upstream names, tried in this order for content addressed by digest. */
    upstreams: z.array(z.string()).min(2, 'a fallback group needs at least two upstreams'),
    /** Repository globs (upstream-side, e.g. library/*) whose tags may also resolve from later members. */
    tags: z.array(z.string().min(1)).default([]),
  })
  .strict();
