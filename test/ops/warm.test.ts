/**
 * `oci-mirror warm` as an operator runs it, against a real docker-registry: every platform of
 * an OCI index by default, only some with --platform, a failing image named with exit 1, and
 * then, with the registry stopped, skopeo pulls every platform through a mirror over the same
 * storage without a single fill.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fsStorage } from '../../adapters/fs/index.js';
import { ttyReporter } from '../../src/admin/progress.js';
import { waitFor } from '../helpers/http.js';
import { pushOciIndex, type Fixture } from '../helpers/images.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { spawnTracked, terminate, terminateAll, type Tracked } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const CLI = join(process.cwd(), 'src', 'cli.ts');
const CLI_TIMEOUT_MS = 40_000;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the command line to its end (bounded), with stdout a pipe: the plain, line-per-event output. */
async function cli(args: string[]): Promise<CliResult> {
  // node itself, with tsx as a loader: the tsx command would fork a child that SIGKILL misses.
  const proc: Tracked = spawnTracked(process.execPath, ['--import', 'tsx', CLI, ...args], { keepAll: true });
  const timer = setTimeout(() => void terminate(proc, 2_000), CLI_TIMEOUT_MS);
  const exit = await proc.exited.finally(() => clearTimeout(timer));
  return { code: exit.code, stdout: proc.stdout(), stderr: proc.stderr() };
}

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('oci-mirror warm', () => {
  let registry: RunningRegistry | undefined;
  let mirror: TestMirror | undefined;
  let work: string;
  let multi: Fixture;
  let limited: Fixture;
  let prefetched: Fixture;

  async function writeConfig(name: string, dataDir: string): Promise<string> {
    const path = join(work, `${name}.yaml`);
    await writeFile(
      path,
      [
        `storage: { type: fs, path: ${JSON.stringify(dataDir)}, fsync: false }`,
        'upstreams:',
        '  - name: registry.test',
        `    url: ${registry!.url}`,
        '    timeouts: { connect: 2s, headers: 5s, body: 5s }',
        '',
      ].join('\n'),
    );
    return path;
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-warm-'));
    registry = await startRegistry();
    multi = await pushOciIndex(registry, { name: 'warm/multi', tag: 'v1' });
    limited = await pushOciIndex(registry, { name: 'warm/limited', tag: 'v1' });
    prefetched = await pushOciIndex(registry, { name: 'warm/prefetched', tag: 'v1' });
  });

  afterAll(async () => {
    await Promise.allSettled([mirror?.dispose(), registry?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('warms every platform of an OCI index, one plain line per event, and ls shows it complete', async () => {
    const config = await writeConfig('main', join(work, 'main'));
    const r = await cli(['warm', '--config', config, multi.ref]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(`${multi.ref}  start`);
    expect(lines).toContain(`${multi.ref}  manifest ${multi.digest} ${multi.mediaType} MISS`);
    for (const image of multi.images) {
      const platform = `${image.platform.os}/${image.platform.architecture}`;
      expect(lines).toContain(`${multi.ref}  manifest ${image.digest} ${image.mediaType} ${platform} MISS`);
    }
    for (const blob of multi.blobs) {
      expect(lines.filter((l) => l.startsWith(`${multi.ref}  blob ${blob.digest} `) && l.endsWith(' fetched'))).toHaveLength(1);
    }
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${multi.ref}  plan ${multi.blobs.length} blobs, `)));
    expect(lines.at(-2)).toMatch(
      new RegExp(`^${multi.ref}  done ${multi.digest}  2 platforms \\(linux/amd64, linux/arm64\\), 3 manifests, ${multi.blobs.length} blobs, `),
    );
    expect(lines.at(-1)).toBe('warmed 1 of 1 image');

    // A second warm finds everything cached and fetches nothing.
    const again = await cli(['warm', '--config', config, multi.ref]);
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain(' fetched\n');
    expect(again.stdout).toContain('(0 B fetched)');

    const ls = await cli(['ls', '--config', config]);
    expect(ls.code).toBe(0);
    const [header, row, ...rest] = ls.stdout.trim().split('\n');
    expect(header).toMatch(/^REPOSITORY +TAG +DIGEST +SIZE +LAST ACCESS +PLATFORMS +CACHED$/);
    expect(rest).toEqual([]);
    expect(row).toMatch(/^registry\.test\/warm\/multi +v1 +sha256:[0-9a-f]{12} +[\d.]+ kB +\d{4}-\d\d-\d\dT[\d:]+Z +linux\/amd64,linux\/arm64 +complete$/);

    const json = await cli(['ls', '--config', config, '--json']);
    const { images } = JSON.parse(json.stdout) as { images: Array<Record<string, unknown>> };
    const bytes = multi.size + multi.images.reduce((n, i) => n + i.size, 0) + multi.blobs.reduce((n, b) => n + b.size, 0);
    expect(images).toEqual([
      expect.objectContaining({
        upstream: 'registry.test',
        repository: 'warm/multi',
        tag: 'v1',
        digest: multi.digest,
        size: bytes,
        complete: true,
        manifests: { cached: 3, total: 3 },
        blobs: { cached: multi.blobs.length, total: multi.blobs.length },
      }),
    ]);
  });

  it('fetches only the platforms given with --platform', async () => {
    const dataDir = join(work, 'limited');
    const config = await writeConfig('limited', dataDir);
    const r = await cli(['warm', '--config', config, '--platform', 'linux/arm64', limited.ref]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1 platform (linux/arm64), 2 manifests');

    const store = fsStorage({ path: dataDir, fsync: false });
    const stored = async (digest: string) => (await store.blobs.stat(digest)) !== undefined;
    const [amd64, arm64] = [limited.images[0]!, limited.images[1]!];
    expect(arm64.platform.architecture).toBe('arm64');
    for (const d of [limited, arm64, arm64.config, ...arm64.layers]) expect(await stored(d.digest)).toBe(true);
    for (const d of [amd64, amd64.config, ...amd64.layers]) expect(await stored(d.digest)).toBe(false);

    const ls = await cli(['ls', '--config', config]);
    const blobs = arm64.layers.length + 1;
    expect(ls.stdout).toMatch(new RegExp(`registry\\.test/warm/limited +v1 .* linux/arm64 +partial: 2/3 manifests, ${blobs}/${blobs} blobs\n`));

    const none = await cli(['warm', '--config', config, '--platform', 'linux/s390x', limited.ref]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`warm ${limited.ref} failed: MANIFEST_UNKNOWN: ${limited.ref} has no manifest for linux/s390x (it has linux/amd64, linux/arm64)`);
  });

  it('names each image that failed and exits 1, warming the others', async () => {
    const dataDir = join(work, 'failing');
    const config = await writeConfig('failing', dataDir);
    const list = join(work, 'images.txt');
    await writeFile(list, `# images for the outage\n${multi.ref}\n\nwarm/missing:v1   # not pushed\n`);
    const r = await cli(['warm', '--config', config, '--file', list, 'warm/multi@sha256:' + '0'.repeat(64)]);
    expect(r.code).toBe(1);
    const errors = r.stderr.trim().split('\n');
    // The images named on the command line come first, then those of the list.
    expect(errors).toEqual([
      expect.stringMatching(/^oci-mirror: warm warm\/multi@sha256:0{64} failed: MANIFEST_UNKNOWN: /),
      expect.stringMatching(/^oci-mirror: warm warm\/missing:v1 failed: MANIFEST_UNKNOWN: /),
    ]);
    expect(r.stdout).toContain(`${multi.ref}  done ${multi.digest}`);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('warmed 1 of 3 images, 2 failed');
  });

  it('exits 2 for bad usage', async () => {
    const config = await writeConfig('usage', join(work, 'usage'));
    for (const args of [['warm', '--config', config], ['warm', '--config', config, '--platform', 'linux', multi.ref], ['warm', '--bogus']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^oci-mirror warm: /);
    }
  });

  it('with cache.prefetchPlatforms, fills the other platforms of an index a client pulled one of', async () => {
    const m = await startTestMirror(registry!.url, { cache: { prefetchPlatforms: true } });
    try {
      // Without --all skopeo pulls the host's platform only.
      await skopeoCopy(`${m.host}/${prefetched.ref}`, join(work, 'pull-one'), { timeoutMs: 30_000 });
      const store = fsStorage({ path: m.dataDir, fsync: false });
      const wanted = [prefetched, ...prefetched.images, ...prefetched.blobs];
      const missing = async () => (await Promise.all(wanted.map(async (d) => ((await store.blobs.stat(d.digest)) ? [] : [d.digest])))).flat();
      await waitFor(async () => (await missing()).length === 0, 10_000, 'every platform to be prefetched');
    } finally {
      await m.dispose();
    }
  });

  describe('with the registry stopped', () => {
    beforeAll(async () => {
      await registry!.stop();
      // A mirror over the warmed storage; tags are past their TTL at once, so each pull asks the
      // (dead) upstream first and is then served what the warm-up stored.
      mirror = await startTestMirror(registry!.url, { cache: { tagTtl: '1ms' } }, { dataDir: join(work, 'main') });
    });

    it('serves every platform of the warmed index from the cache, with no fill', async () => {
      let fills = 0;
      mirror!.mirror.events.on('fill:start', () => fills++);
      const dir = join(work, 'pull-all');
      await skopeoCopy(`${mirror!.host}/${multi.ref}`, dir, { all: true, timeoutMs: 30_000 });
      await verifyDirPull(dir, multi);
      expect(fills).toBe(0);
    });
  });
});

describe('warm progress on a terminal', () => {
  it('redraws one line with bytes, rate and time left, and leaves a line per finished image', () => {
    vi.useFakeTimers();
    try {
      const out: string[] = [];
      const err: string[] = [];
      let now = 0;
      const r = ttyReporter({ write: (s: string) => out.push(s) }, { write: (s: string) => err.push(s) }, 2, { intervalMs: 100, now: () => now });
      r.onEvent({ type: 'start', image: 'a:1' });
      expect(out.at(-1)).toBe('\r\x1b[2K[1/2] a:1  manifests…');
      r.onEvent({ type: 'plan', image: 'a:1', blobs: 2, bytes: 4_000_000 });
      r.onEvent({ type: 'blob', image: 'a:1', digest: 'sha256:aa', size: 1_000_000, fetched: false });
      now = 1000;
      r.onEvent({ type: 'bytes', image: 'a:1', bytes: 1_000_000 });
      vi.advanceTimersByTime(100);
      expect(out.at(-1)).toBe('\r\x1b[2K[1/2] a:1  2.00 MB / 4.00 MB 50%  1.00 MB/s  2.0 s left');
      const result = { image: 'a:1', digest: 'sha256:bb', mediaType: 'x', platforms: [], manifests: 1, blobs: 2, bytes: 4_000_000, fetched: 3_000_000, durationMs: 3000 };
      r.onEvent({ type: 'done', image: 'a:1', result });
      expect(out.slice(-2)).toEqual(['\r\x1b[2K', 'a:1  done sha256:bb  1 manifest, 2 blobs, 4.00 MB (3.00 MB fetched) in 3.0 s\n']);
      r.onEvent({ type: 'start', image: 'b:1' });
      r.onEvent({ type: 'failed', image: 'b:1', error: 'UNAVAILABLE: upstream down' });
      expect(err).toEqual(['oci-mirror: warm b:1 failed: UNAVAILABLE: upstream down\n']);
      r.finish({ results: [result], failures: [{ image: 'b:1', error: 'UNAVAILABLE: upstream down' }] });
      expect(out.at(-1)).toBe('warmed 1 of 2 images, 1 failed\n');
      const drawn = out.length;
      vi.advanceTimersByTime(1000);
      expect(out).toHaveLength(drawn);
    } finally {
      vi.useRealTimers();
    }
  });
});
