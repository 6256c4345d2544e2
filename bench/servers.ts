/**
 * The servers the benchmark pulls from, all on 127.0.0.1 with their files under the bench's
 * temp dir: the upstream docker-registry (with its access log kept in a file, so that its
 * blob GETs can be counted), distribution's own pull-through cache, nginx serving the blob
 * file with sendfile, and the mirror as a child process from dist/, on fs storage or with its
 * blobs on S3 (s3rver, started by the cases through test/helpers/s3.ts).
 */
import { access, chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { describeExit, spawnTracked, terminate, type Tracked } from '../test/helpers/processes.js';
import { freePort, REGISTRY_BINARY, startRegistry, type RunningRegistry } from '../test/helpers/registry.js';
import { S3RVER_CREDENTIALS, type RunningS3 } from '../test/helpers/s3.js';
import { which } from '../test/helpers/tools.js';
import { SERVER_NODE_FLAGS } from '../src/node-flags.js';
import { pidsByCommandLine } from './measure.js';

const READY_TIMEOUT_MS = 15_000;

/** A registry process with the pids whose CPU time is its own (found in /proc by its config file's path). */
export interface Registry extends RunningRegistry {
  readonly pids: number[];
}

async function withPids(registry: RunningRegistry): Promise<Registry> {
  const pids = await pidsByCommandLine(join(registry.dir, 'config.yml'));
  if (pids.length === 0) {
    await registry.destroy();
    throw new Error(`no process in /proc runs ${registry.dir}/config.yml`);
  }
  return Object.assign(registry, { pids });
}

export interface Upstream extends Registry {
  /** How many `GET …/blobs/<digest>` lines its access log holds so far (every status). */
  blobGets(digest: string): Promise<number>;
  /** How many GET or HEAD lines for a path that contains `path` its access log holds so far. */
  requests(path: string): Promise<number>;
}

/**
 * The upstream registry with its access log on. distribution writes that log to stdout, and
 * the helper keeps only a tail of it, so the registry is launched through a two-line script
 * that sends stdout to a file instead.
 */
export async function startUpstream(work: string): Promise<Upstream> {
  const accessLog = join(work, 'upstream-access.log');
  const wrapper = join(work, 'registry-with-access-log.sh');
  await writeFile(wrapper, `#!/bin/sh\nexec ${REGISTRY_BINARY} "$@" >>${shellQuote(accessLog)}\n`);
  await chmod(wrapper, 0o755);
  const registry = await withPids(await startRegistry({ binary: wrapper, config: { log: { accesslog: { disabled: false } } } }));
  const lines = async (match: (line: string) => boolean): Promise<number> =>
    (await readFile(accessLog, 'utf8').catch(() => '')).split('\n').filter(match).length;
  return Object.assign(registry, {
    blobGets: (digest: string) => lines((line) => line.includes('"GET /v2/') && line.includes(`/blobs/${digest} `)),
    requests: (path: string) => lines((line) => /"(GET|HEAD) \/v2\//.test(line) && line.includes(path)),
  });
}

/** distribution 2.8 as a pull-through cache of `remoteurl`, over fresh storage. */
export async function startProxyRegistry(remoteurl: string): Promise<Registry> {
  return withPids(await startRegistry({ proxy: { remoteurl } }));
}

export interface Server {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** A file nginx serves besides the blob: `/<name>`, these bytes, with this content type. */
export interface NginxFile {
  name: string;
  bytes: Buffer;
  type: string;
}

/**
 * nginx serving `file` as `/blob` with sendfile: what a static file server does at best on this
 * machine; and each of `extra` as `/<name>` with its own content type.
 */
export async function startNginx(work: string, file: string, extra: NginxFile[] = []): Promise<Server> {
  const binary = which('nginx');
  if (!binary) throw new Error('nginx is not installed (apt-get install nginx)');
  const dir = join(work, 'nginx');
  await mkdir(join(dir, 'www'), { recursive: true });
  await symlink(resolve(file), join(dir, 'www', 'blob'));
  for (const f of extra) await writeFile(join(dir, 'www', f.name), f.bytes);
  const locations = extra.map((f) => `    location = /${f.name} { root ${dir}/www; types { } default_type ${f.type}; }\n`).join('');
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  // As root, nginx would otherwise hand its work to `nobody`, who cannot read a 0700 temp dir.
  const user = process.getuid?.() === 0 ? `user ${userInfo().username};\n` : '';
  await writeFile(
    conf,
    `${user}daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  access_log ${dir}/access.log;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    location / { root ${dir}/www; }
${locations}  }
}
`,
  );
  const proc = spawnTracked(binary, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')]);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(proc, `${url}/blob`, 'nginx', async () => (await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')).slice(-2000));
  return { url, pid: proc.pid, stop: async () => void (await terminate(proc)) };
}

export interface MirrorOptions {
  upstreamUrl: string;
  dataDir: string;
  /** The config file goes here. */
  work: string;
  /** Extra node flags for the child, e.g. `--cpu-prof`. */
  nodeFlags?: string[];
  /** Blobs in this S3 bucket (under S3_PREFIX), metadata and the fill spool still in `dataDir`; fs storage when absent. */
  s3?: RunningS3;
  /**
   * A replica: metadata on Keyv/Redis at this URL (instead of fs) and replication on through
   * it, advertising its own http://127.0.0.1:<port>. Needs `s3` (the blobs every replica shares).
   */
  replica?: { redis: string; secret: string };
  /** The CLI to run; dist/src/cli.js of this checkout by default (an A/B run passes another build's). */
  cli?: string;
  /** The config's `workers`: one process by default. */
  workers?: number;
}

/** The key prefix of the mirror's blobs in an S3 bucket. */
export const S3_PREFIX = 'bench/';

/** Where the S3 adapter keeps a committed blob: `<prefix>blobs/<alg>/<hex>`. */
export const s3Key = (digest: string): string => `${S3_PREFIX}blobs/${digest.replace(':', '/')}`;

export interface MirrorProcess extends Server {
  logs(): string;
}

const CLI = resolve(import.meta.dirname, '..', 'dist', 'src', 'cli.js');

/**
 * The mirror's CLI as its own process, configured as a user would: fs storage with the default
 * fsync, or blobs on S3 (default part size and concurrency) with metadata on fs.
 */
export async function startMirror({ upstreamUrl, dataDir, work, nodeFlags = [], s3, replica, cli = CLI, workers }: MirrorOptions): Promise<MirrorProcess> {
  if (replica && !s3) throw new Error('a replica needs its blobs on S3');
  const port = await freePort();
  const config = join(work, `mirror-${port}.yaml`);
  const url = `http://127.0.0.1:${port}`;
  const storage = s3
    ? {
        blobs: { type: 's3', bucket: s3.bucket, prefix: S3_PREFIX, endpoint: s3.endpoint, forcePathStyle: true, ...S3RVER_CREDENTIALS },
        meta: replica ? { type: 'keyv', url: replica.redis, namespace: 'bench' } : { type: 'fs', path: dataDir },
      }
    : { type: 'fs', path: dataDir };
  await writeFile(
    config,
    stringify({
      listen: `127.0.0.1:${port}`,
      storage,
      upstreams: [{ name: 'bench.upstream', url: upstreamUrl }],
      cache: { tagTtl: '5m' },
      // With S3 the fill spools to a local file as well (unlinked at once); keep it in the bench's temp dir.
      fill: { timeout: '5m', ...(s3 ? { spoolDir: join(dataDir, 'spool') } : {}) },
      ...(replica ? { replication: { redis: replica.redis, advertise: url, secret: replica.secret, namespace: 'bench' } } : {}),
      ...(workers ? { workers } : {}),
    }),
  );
  // Started as `npm start` starts it: with the server's node flags (src/node-flags.ts).
  const proc = spawnTracked(process.execPath, [...SERVER_NODE_FLAGS, ...nodeFlags, cli, '--config', config], {
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  await waitReady(proc, `${url}/healthz`, 'mirror', async () => proc.output());
  return {
    url,
    pid: proc.pid,
    stop: () => stopChild(proc, `the mirror at ${url}`),
    logs: () => proc.output(),
  };
}

const FLOOR = resolve(import.meta.dirname, 'floor.mjs');

/**
 * One of bench/floor.mjs's programs (the design card's stack alone, or the least tee) as its own
 * process, started with the server's node flags like the mirror, and ready when it answers /healthz.
 */
export async function startFloor(args: ['stack'] | ['tee', string, number]): Promise<Server> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawnTracked(process.execPath, [...SERVER_NODE_FLAGS, FLOOR, ...args.map(String)], { env: { ...process.env, PORT: String(port) } });
  await waitReady(proc, `${url}/healthz`, `floor.mjs ${args[0]}`, async () => proc.output());
  return {
    url,
    pid: proc.pid,
    stop: () => stopChild(proc, `floor.mjs ${args[0]} at ${url}`),
  };
}

/** Stops a server this bench started; one that is gone before it is stopped crashed: its runs failed, and this says why. */
async function stopChild(proc: Tracked, what: string): Promise<void> {
  const exit = proc.exit();
  if (exit) process.stderr.write(`[bench] ${what} ${describeExit(exit)} on its own:\n${proc.output()}\n`);
  await terminate(proc, 10_000);
}

async function waitReady(proc: Tracked, url: string, what: string, logs: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const exit = proc.exit();
    if (exit) throw new Error(`${what} ${describeExit(exit)} before it was ready:\n${proc.output()}\n${await logs()}`);
    try {
      const res = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
      last = `HEAD ${url} answered ${res.status}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await terminate(proc);
  throw new Error(`${what} at ${url} was not ready after ${READY_TIMEOUT_MS} ms (${last}):\n${await logs()}`);
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Polls `done` every 50 ms until it is true; resolves with the time waited. */
async function poll(what: string, done: () => Promise<boolean>, timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  while (!(await done())) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - started;
}

/** Waits until the mirror answers a HEAD of `url` from its storage (X-Mirror-Cache: HIT): verified, synced, renamed into place. */
export function waitStored(url: string): Promise<number> {
  return poll(`${url} was not stored`, async () => {
    const res = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(5_000) });
    return res.headers.get('x-mirror-cache') === 'HIT';
  });
}

/**
 * Waits until the blob is committed in S3: HeadObject finds its final key with the whole size
 * (the adapter completes the multipart upload only after the digest verified).
 */
export function waitInS3(s3: RunningS3, digest: string, size: number): Promise<number> {
  const Key = s3Key(digest);
  return poll(`${digest} did not appear in S3`, async () => {
    try {
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key }), { abortSignal: AbortSignal.timeout(5_000) });
      return head.ContentLength === size;
    } catch (e) {
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw e;
    }
  });
}

/**
 * Waits until distribution's proxy has committed its own copy of a blob: the blob's data file
 * and the repository's link to it (the link is what its next GET looks for) are on disk.
 */
export function waitProxyStored(registry: RunningRegistry, repository: string, digest: string): Promise<number> {
  const hex = digest.slice('sha256:'.length);
  const root = join(registry.dir, 'data', 'docker', 'registry', 'v2');
  const files = [join(root, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'), join(root, 'repositories', repository, '_layers', 'sha256', hex, 'link')];
  return poll(`${registry.url} did not store ${digest}`, async () => (await Promise.all(files.map(exists))).every(Boolean));
}

const exists = (file: string): Promise<boolean> => access(file).then(() => true, () => false);
