/**
 * `workers: 2` as a user runs it: the CLI in its own process (the primary), which forks two
 * workers on one port over fs storage, in front of a fake upstream that counts GETs. Twenty
 * concurrent clients on one cold blob, spread over both workers, cause one upstream GET and
 * all get the blob's bytes; the worker holding a fill killed with SIGKILL mid-fill is
 * replaced, the other worker takes its fill over, and clients that retry as real ones do get
 * the whole blob, and the killed worker's spool is removed once none of its fills can be alive
 * while a live fill's stays; SIGTERM stops the workers with the primary. A worker's relay socket serves
 * the relay alone; a worker that cannot listen ends the start; eviction takes its turns through
 * the primary; every worker refuses a blob over `fill.maxBlobBytes` to HEAD and GET alike.
 * `workers: 1` is one process, and `--workers` refuses storage private to one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdtemp, readdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorConfigInput } from '../../src/config.js';
import { sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor } from '../helpers/http.js';
import { describeExit, spawnTracked, terminate, terminateAll, type Tracked } from '../helpers/processes.js';
import { freePort } from '../helpers/registry.js';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.js';

const MiB = 1024 * 1024;
const CLI = join(process.cwd(), 'src', 'cli.ts');
/** Start-up under tsx, three processes at once, on a machine other tests keep busy. */
const START_TIMEOUT_MS = 45_000;

interface LogLine {
  pid: number;
  msg: string;
  [key: string]: unknown;
}

interface RunningMirror {
  proc: Tracked;
  url: string;
  dataDir: string;
  /** Every JSON line the primary and its workers wrote to their shared stdout so far. */
  lines(): LogLine[];
}

/** A client that retries as docker and containerd do when a pull breaks, and checks every body it keeps. */
interface Pull {
  /** Body bytes received so far, by the attempt under way. */
  received(): number;
  result: Promise<{ attempts: number; digest: string; status: number }>;
}

/** The names of the files below `dir` that process `pid` holds open (Linux: its /proc/<pid>/fd links). */
async function openFiles(pid: number, dir: string): Promise<string[]> {
  const real = await realpath(dir);
  const links = await Promise.all((await readdir(`/proc/${pid}/fd`)).map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return links.filter((l) => dirname(l) === real).map((l) => basename(l));
}

function pull(url: string, maxAttempts = 5): Pull {
  let received = 0;
  const once = () =>
    new Promise<{ status: number; body: Buffer; complete: boolean }>((resolve) => {
      received = 0;
      const { hostname, port, pathname } = new URL(url);
      const req = request({ hostname, port, path: pathname, agent: false });
      const timer = setTimeout(() => req.destroy(new Error('timed out')), 60_000);
      const done = (r: { status: number; body: Buffer; complete: boolean }) => {
        clearTimeout(timer);
        resolve(r);
      };
      req.on('error', () => done({ status: 0, body: Buffer.alloc(0), complete: false }));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          received += c.length;
        });
        res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), complete: res.complete }));
        res.on('error', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), complete: false }));
      });
      req.end();
    });
  const result = (async () => {
    for (let attempt = 1; ; attempt++) {
      const r = await once();
      if ((r.status === 200 && r.complete) || attempt === maxAttempts) return { attempts: attempt, digest: sha256(r.body), status: r.status };
      await sleep(200);
    }
  })();
  return { received: () => received, result };
}

describe('workers: several processes on one port', () => {
  let upstream: FakeUpstream;
  let work: string;
  let mirror: RunningMirror;

  /** `reuse`: an earlier mirror's data directory, as a restart over the same storage would find it. */
  const start = async (config: Partial<MirrorConfigInput>, args: string[] = [], reuse?: string): Promise<RunningMirror> => {
    const port = await freePort();
    const dataDir = reuse ?? (await mkdtemp(join(work, 'data-')));
    const path = join(work, `mirror-${port}.yaml`);
    const full: MirrorConfigInput = {
      listen: `127.0.0.1:${port}`,
      storage: { type: 'fs', path: dataDir, fsync: false },
      upstreams: [{ name: 'registry.test', url: upstream.url, timeouts: { connect: '2s', headers: '5s', body: '10s' } }],
      shutdownGrace: '2s',
      ...config,
    };
    // JSON is YAML.
    await writeFile(path, JSON.stringify(full));
    const proc = spawnTracked(process.execPath, ['--import', 'tsx', CLI, '--config', path, ...args], {
      env: { ...process.env, LOG_LEVEL: 'debug', LOG_FORMAT: 'json' },
      keepAll: true,
    });
    const lines = () =>
      proc
        .stdout()
        .split('\n')
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as LogLine];
          } catch {
            return [];
          }
        });
    return { proc, url: `http://127.0.0.1:${port}`, dataDir, lines };
  };

  const listening = async (m: RunningMirror, msg: string) => {
    await waitFor(
      () => {
        const exit = m.proc.exit();
        if (exit) throw new Error(`the mirror ${describeExit(exit)}: ${m.proc.output()}`);
        return m.lines().some((l) => l.msg === msg);
      },
      START_TIMEOUT_MS,
      `"${msg}"`,
    );
  };

  /** The pids of the workers that said they listen, and have not exited since, as the primary tells. */
  const workerPids = (m: RunningMirror): number[] => {
    const live = new Set<number>();
    for (const l of m.lines()) {
      if (l.pid !== m.proc.pid) continue;
      if (l.msg === 'worker listening') live.add(l.worker as number);
      if (l.msg === 'worker exited; starting another') live.delete(l.worker as number);
    }
    return [...live];
  };

  const blobUrl = (digest: string) => `${mirror.url}/v2/team/app/blobs/${digest}`;
  const storedFile = (dataDir: string, digest: string) => join(dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-workers-'));
    upstream = await startFakeUpstream();
    mirror = await start({ workers: 2 });
    await listening(mirror, 'workers listening');
  }, START_TIMEOUT_MS + 5_000);

  afterAll(async () => {
    await terminateAll(5_000);
    await upstream?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('twenty concurrent clients over two workers: one upstream GET, every body verified', async () => {
    expect(workerPids(mirror)).toHaveLength(2);
    // The workers serve, so they run with the server's node flags, which the primary adds.
    for (const pid of workerPids(mirror)) expect((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')).toEqual(expect.arrayContaining([...SERVER_NODE_FLAGS]));
    const data = randomBytes(4 * MiB);
    const digest = upstream.addBlob(data);
    // About 1.3 s upstream: every client arrives while the one fill is running.
    upstream.faults.set(digest, { delayMs: 20, chunkSize: 64 * 1024 });

    // 25 ms apart, so that the primary hands them out in turn rather than in a burst that the
    // worker which happens to be free first takes whole; all twenty still arrive during the fill.
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        await sleep(i * 25);
        return raw(blobUrl(digest), { timeoutMs: 60_000 });
      }),
    );

    expect(results.map((r) => [r.status, r.complete])).toEqual(Array(20).fill([200, true]));
    expect(results.every((r) => sha256(r.body) === digest)).toBe(true);
    expect(upstream.count('GET', `/blobs/${digest}`)).toBe(1);
    // Both workers answered some of the twenty (the primary hands connections round-robin).
    const servedBy = () => new Set(mirror.lines().filter((l) => l.msg === 'request' && String(l.path).endsWith(digest)).map((l) => l.pid));
    // A worker writes its access line as the response ends, and the pipe brings it a moment later.
    await waitFor(() => servedBy().size === 2, 10_000, 'access lines from both workers').catch(() => undefined);
    expect([...servedBy()].sort()).toEqual(workerPids(mirror).sort());
    // Stored once, as the relaying worker found the holder's copy and kept none of its own.
    await waitFor(async () => (await readFile(storedFile(mirror.dataDir, digest)).catch(() => undefined))?.equals(data) ?? false, 10_000, 'the blob on disk');
    // The relaying worker drops its own spool file once its copy has verified.
    await waitFor(async () => (await readdir(join(mirror.dataDir, 'tmp', 'spool')).catch(() => [])).length === 0, 10_000, 'no spool file left');
  });

  it('a worker\'s relay socket answers the fill relay only, and only with the secret', async () => {
    const relay = mirror.lines().find((l) => l.msg === 'worker listening' && workerPids(mirror).includes(l.worker as number))?.relay as string;
    expect(relay).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await raw(`${relay}/v2/`)).status).toBe(404);
    expect((await raw(`${relay}/healthz`)).status).toBe(404);
    expect((await raw(`${relay}/_mirror/fills/sha256:${'a'.repeat(64)}`)).status).toBe(401);
  });

  it('a worker killed mid-fill is replaced; the other takes the fill over and every client gets the blob', async () => {
    const data = randomBytes(8 * MiB);
    const digest = upstream.addBlob(data);
    let resume!: () => void;
    upstream.faults.set(digest, { holdAt: 2 * MiB, hold: new Promise<void>((r) => (resume = r)), chunkSize: 256 * 1024 });
    const before = workerPids(mirror);

    // The first client's worker claims the blob and gets stuck after 2 MiB; nineteen more join
    // it, on that worker or through the other worker's relay.
    const first = pull(blobUrl(digest));
    await waitFor(() => upstream.count('GET', `/blobs/${digest}`) === 1, 10_000, 'the holder to start its fill');
    // The primary's line about the claim comes through the pipe a moment after the claim.
    const claimed = () => mirror.lines().find((l) => l.msg === 'lease claimed' && l.key === `fill-lease:${digest}`);
    await waitFor(() => claimed() !== undefined, 10_000, 'the primary to log the claim');
    const holder = claimed()!.worker as number;
    expect(before).toContain(holder);
    const others = Array.from({ length: 19 }, () => pull(blobUrl(digest)));
    await waitFor(() => [first, ...others].every((p) => p.received() > 0), 20_000, 'every client to get its first bytes');
    expect(upstream.count('GET', `/blobs/${digest}`)).toBe(1);

    process.kill(holder, 'SIGKILL');
    await waitFor(() => workerPids(mirror).length === 2 && !workerPids(mirror).includes(holder), START_TIMEOUT_MS, 'a new worker to replace the killed one');
    resume();
    upstream.faults.delete(digest);

    const results = await Promise.all([first, ...others].map((p) => p.result));
    expect(results.map((r) => [r.status, r.digest])).toEqual(Array(20).fill([200, digest]));
    // The first client was on the killed worker: its pull broke once and succeeded on retry.
    expect(results[0]!.attempts).toBeGreaterThan(1);
    // The other worker took the fill over (one more GET), and nobody fetched it again.
    expect(upstream.count('GET', `/blobs/${digest}`)).toBe(2);
    expect((await readFile(storedFile(mirror.dataDir, digest))).equals(data)).toBe(true);
    const again = await raw(blobUrl(digest));
    expect(again.headers['x-mirror-cache']).toBe('HIT');
    expect(createHash('sha256').update(again.body).digest('hex')).toBe(digest.slice(7));
  }, 150_000);

  it("a killed worker's spool is removed once none of its fills can be alive; a live fill's spool stays", async () => {
    // fill.timeout 30s: the primary removes what a dead worker left 40 s (the timeout and its
    // 10 s margin) after it died. The upstream's body timeout is longer than the live fill's hold.
    const sweeping = await start({
      workers: 2,
      fill: { timeout: '30s' },
      upstreams: [{ name: 'registry.test', url: upstream.url, timeouts: { connect: '2s', headers: '5s', body: '60s' } }],
    });
    await listening(sweeping, 'workers listening');
    const url = (digest: string) => `${sweeping.url}/v2/team/app/blobs/${digest}`;
    const spools = async (digest: string) => (await readdir(join(sweeping.dataDir, 'tmp', 'spool')).catch(() => [])).filter((f) => f.startsWith(digest.slice(7, 23)));
    const held = (digest: string, holdAt: number) => {
      let resume!: () => void;
      upstream.faults.set(digest, { holdAt, hold: new Promise<void>((r) => (resume = r)), chunkSize: 256 * 1024 });
      return () => {
        resume();
        upstream.faults.delete(digest);
      };
    };

    // One worker holds the fill, stuck after 1 MiB; the other relays it into a spool of its own.
    const data = randomBytes(4 * MiB);
    const digest = upstream.addBlob(data);
    const resume = held(digest, MiB);
    const pulls = [pull(url(digest))];
    await waitFor(() => upstream.count('GET', `/blobs/${digest}`) === 1, 10_000, 'the holder to start its fill');
    for (let i = 0; i < 5; i++) {
      await sleep(25);
      pulls.push(pull(url(digest)));
    }
    await waitFor(async () => (await spools(digest)).length === 2, 20_000, 'the holder and the relaying worker to spool');
    const claimed = () => sweeping.lines().find((l) => l.msg === 'lease claimed' && l.key === `fill-lease:${digest}`);
    await waitFor(() => claimed() !== undefined, 10_000, 'the primary to log the claim');
    const holder = claimed()!.worker as number;
    const [dead, ...more] = await openFiles(holder, join(sweeping.dataDir, 'tmp', 'spool'));
    expect(dead).toBeDefined();
    expect(more).toEqual([]);

    process.kill(holder, 'SIGKILL');
    const killedAt = Date.now();
    resume();
    const results = await Promise.all(pulls.map((p) => p.result));
    expect(results.map((r) => [r.status, r.digest])).toEqual(Array(pulls.length).fill([200, digest]));
    // The other worker took the fill over; the dead worker's spool is left for now.
    await waitFor(async () => (await readFile(storedFile(sweeping.dataDir, digest)).catch(() => undefined))?.equals(data) ?? false, 10_000, 'the blob on disk');
    expect(await spools(digest)).toContain(dead);

    // A fill that starts 22 s after the death is alive when the leftovers go (40 s after it), and
    // its spool, written 18 s before, is younger than their age.
    await sleep(Math.max(0, killedAt + 22_000 - Date.now()));
    const live = randomBytes(2 * MiB);
    const liveDigest = upstream.addBlob(live);
    const release = held(liveDigest, 512 * 1024);
    const livePull = pull(url(liveDigest), 1);
    await waitFor(async () => (await spools(liveDigest)).length === 1, 10_000, 'the live fill to spool');
    const [liveSpool] = await spools(liveDigest);
    expect(await spools(digest)).toContain(dead);
    expect(Date.now() - killedAt).toBeLessThan(40_000);

    const removed = () => sweeping.lines().some((l) => l.pid === sweeping.proc.pid && l.msg === "removed what a dead worker's fills left unfinished");
    await waitFor(removed, 30_000, 'the primary to remove the leftovers');
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(40_000);
    // Nothing of the dead worker in tmp/: the live fill's spool is all there is.
    const inTmp = await readdir(join(sweeping.dataDir, 'tmp'), { recursive: true, withFileTypes: true });
    expect(inTmp.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))).toEqual([join(sweeping.dataDir, 'tmp', 'spool', liveSpool!)]);
    release();
    expect(await livePull.result).toEqual({ attempts: 1, digest: liveDigest, status: 200 });
    await waitFor(async () => (await readFile(storedFile(sweeping.dataDir, liveDigest)).catch(() => undefined))?.equals(live) ?? false, 10_000, 'the live blob on disk');
    expect(await terminate(sweeping.proc, 15_000)).toEqual({ code: 0, signal: null });
  }, 150_000);

  it('SIGTERM to the primary stops every worker, and it exits 0', async () => {
    const pids = workerPids(mirror);
    expect(pids).toHaveLength(2);
    const exit = await terminate(mirror.proc, 15_000);
    expect(exit).toEqual({ code: 0, signal: null });
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor(() => !pids.some(alive), 5_000, 'the workers to be gone');
    expect(mirror.lines().filter((l) => l.msg === 'worker exited; starting another' && pids.includes(l.worker as number))).toEqual([]);
  });

  it('a worker that cannot start stops the start: the primary exits non-zero, no worker left behind', async () => {
    const taken = await start({ workers: 1 });
    await listening(taken, 'mirror listening');
    const port = new URL(taken.url).port;
    const clash = await start({ workers: 2, listen: `127.0.0.1:${port}` });
    const exit = await clash.proc.exited;
    expect(exit.code, clash.proc.output()).not.toBe(0);
    expect(clash.lines().some((l) => l.msg === 'a worker exited before every worker served; stopping')).toBe(true);
    const forked = clash.lines().filter((l) => l.pid !== clash.proc.pid).map((l) => l.pid);
    for (const pid of forked) expect(() => process.kill(pid, 0)).toThrow();
    await terminate(taken.proc, 10_000);
  });

  it('evicts over two workers, which take their turns through the primary\'s eviction lease', async () => {
    const evicting = await start({ workers: 2, cache: { maxBytes: 1536 * 1024, evictionInterval: '1s' } });
    await listening(evicting, 'workers listening');
    const blobs = [randomBytes(MiB), randomBytes(MiB), randomBytes(MiB)].map((b) => ({ data: b, digest: upstream.addBlob(b) }));
    for (const b of blobs) {
      const res = await raw(`${evicting.url}/v2/team/app/blobs/${b.digest}`);
      expect(sha256(res.body)).toBe(b.digest);
      await waitFor(async () => (await readFile(storedFile(evicting.dataDir, b.digest)).catch(() => undefined)) !== undefined, 10_000, 'the blob on disk');
    }
    const kept = async () => (await Promise.all(blobs.map((b) => readFile(storedFile(evicting.dataDir, b.digest)).then(() => 1, () => 0)))).reduce<number>((a, n) => a + n, 0);
    await waitFor(async () => (await kept()) === 1, 30_000, 'eviction down to one blob');
    const turns = evicting.lines().filter((l) => l.msg === 'lease claimed' && l.key === 'eviction-lease:eviction');
    expect(turns.length).toBeGreaterThan(0);
    expect(await terminate(evicting.proc, 15_000)).toEqual({ code: 0, signal: null });
  });

  it('a blob over fill.maxBlobBytes: every worker answers its HEAD and GET 403, fetching nothing; one stored before the limit was lowered, 200', async () => {
    const limit = 64 * 1024;
    const kept = randomBytes(256 * 1024);
    const keptDigest = upstream.addBlob(kept);
    // Large enough that a mirror which stops at the headers leaves the upstream's body unsent.
    const over = randomBytes(16 * MiB);
    const overDigest = upstream.addBlob(over);
    // Stored under the default limit; then the mirror restarts over the same data with a low one.
    const before = await start({ workers: 1 });
    await listening(before, 'mirror listening');
    expect(sha256((await raw(`${before.url}/v2/team/app/blobs/${keptDigest}`)).body)).toBe(keptDigest);
    await waitFor(async () => (await readFile(storedFile(before.dataDir, keptDigest)).catch(() => undefined)) !== undefined, 10_000, 'the blob on disk');
    expect(await terminate(before.proc, 15_000)).toEqual({ code: 0, signal: null });
    const limited = await start({ workers: 2, fill: { maxBlobBytes: limit } }, [], before.dataDir);
    await listening(limited, 'workers listening');
    const url = (digest: string) => `${limited.url}/v2/team/app/blobs/${digest}`;
    /** The pids of the workers whose access lines say they answered `method` of `digest` with `status`. */
    const answeredBy = (method: string, digest: string, status: number) =>
      new Set(limited.lines().filter((l) => l.msg === 'request' && l.method === method && l.status === status && String(l.path).endsWith(digest)).map((l) => l.pid));
    const bothAnswered = async (method: string, digest: string, status: number) => {
      // A worker writes its access line as the response ends, and the pipe brings it a moment later.
      await waitFor(() => answeredBy(method, digest, status).size === 2, 10_000, `${method} lines from both workers`).catch(() => undefined);
      expect([...answeredBy(method, digest, status)].sort(), `the workers that answered ${method} ${status}`).toEqual(workerPids(limited).sort());
    };

    // Eight of each, one connection each: the primary hands them out in turn, to both workers.
    for (let i = 0; i < 8; i++) {
      const head = await raw(url(overDigest), { method: 'HEAD' });
      expect([head.status, head.body.length, head.headers['x-mirror-cache']]).toEqual([403, 0, 'MISS']);
    }
    await bothAnswered('HEAD', overDigest, 403);
    // A HEAD asks the upstream a HEAD, never for the body.
    expect(upstream.count('GET', `/blobs/${overDigest}`)).toBe(0);
    expect(upstream.count('HEAD', `/blobs/${overDigest}`)).toBe(8);
    for (let i = 0; i < 8; i++) {
      const get = await raw(url(overDigest));
      expect(get.status).toBe(403);
      expect(JSON.parse(get.body.toString()).errors[0]).toMatchObject({ code: 'DENIED', message: expect.stringMatching(/larger than this mirror fetches/) });
    }
    await bothAnswered('GET', overDigest, 403);
    // A GET learns the size from the upstream's answer: one GET each, refused on its
    // headers, the connection dropped before the body's end; nothing kept.
    expect(upstream.count('GET', `/blobs/${overDigest}`)).toBe(8);
    expect(upstream.bodies.get(overDigest)?.cut).toBe(true);
    expect(await readFile(storedFile(limited.dataDir, overDigest)).catch(() => undefined)).toBeUndefined();

    // The blob stored before is served from disk by every worker, to HEAD and GET (eight HEADs,
    // then eight GETs: alternated, the turns would give every HEAD to one worker).
    for (let i = 0; i < 8; i++) {
      const head = await raw(url(keptDigest), { method: 'HEAD' });
      expect([head.status, head.headers['content-length'], head.headers['x-mirror-cache']]).toEqual([200, String(kept.length), 'HIT']);
    }
    for (let i = 0; i < 8; i++) {
      const get = await raw(url(keptDigest));
      expect([get.status, get.headers['x-mirror-cache'], sha256(get.body)]).toEqual([200, 'HIT', keptDigest]);
    }
    await bothAnswered('HEAD', keptDigest, 200);
    await bothAnswered('GET', keptDigest, 200);
    expect(upstream.count('GET', `/blobs/${keptDigest}`)).toBe(1);
    expect(await terminate(limited.proc, 15_000)).toEqual({ code: 0, signal: null });
  }, 150_000);

  it('workers: 1 is one process, as before', async () => {
    const single = await start({ workers: 1 });
    await listening(single, 'mirror listening');
    const data = randomBytes(64 * 1024);
    const digest = upstream.addBlob(data);
    const res = await raw(`${single.url}/v2/team/app/blobs/${digest}`);
    expect(sha256(res.body)).toBe(digest);
    expect(new Set(single.lines().map((l) => l.pid))).toEqual(new Set([single.proc.pid]));
    expect(await terminate(single.proc, 10_000)).toEqual({ code: 0, signal: null });
  });

  it('refuses --workers with storage that lives in one process, naming the key', async () => {
    const refused = await start({ storage: { type: 'keyv', url: 'memory' } }, ['--workers', '2']);
    const exit = await refused.proc.exited;
    expect(exit.code).toBe(2);
    expect(refused.proc.stderr()).toMatch(/storage\.url: "memory" lives in one process; workers: 2 need storage they all share/);
  });
});
