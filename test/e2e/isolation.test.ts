/**
 * Issue #10: cached content is served only through routes that may see it.
 *
 * A cached digest is served through a route (upstream U, repository R) only when it is linked
 * to (U, R): fetched or confirmed through it. Unlinked, the mirror asks U (a HEAD of
 * `/v2/R/blobs/<d>` or `/v2/R/manifests/<d>`): a 404 there is a 404 here (BLOB_UNKNOWN,
 * MANIFEST_UNKNOWN), never the cached bytes and never a 304; a 200 links it, and the bytes
 * come from storage, not from a second GET upstream.
 *
 * Two real docker-registry upstreams: `open.test` (the default, anonymous) and `priv.test`
 * (htpasswd), each behind a counting pass-through so that every upstream request is seen.
 * An authorized client pulls `priv.test/secret/app:1.0` with skopeo; then every route form of
 * the open upstream is probed for that image's layer and manifest, by GET and HEAD, with and
 * without If-None-Match, anonymously and with credentials valid for priv.test: for a mirror
 * that forwards clients' credentials, for one with its own account marked private, for a
 * second instance on the same storage, and after a restart. Within priv.test itself, a
 * repository alice may read (and was just confirmed for) must not serve secret/app's content
 * either, and a fill in flight must not be joined through an unlinked route. Then a protected
 * mirror's `auth.rules` are attacked the same way. Each attack is its own test, named by route
 * and method, so that a failure names the hole.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorConfigInput } from '../../src/config.js';
import { MANIFEST_ACCEPT } from '../../src/media-types.js';
import { startCountingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { raw, waitFor, type RawResponse } from '../helpers/http.js';
import { pushBlob, pushImage, pushUniqueImage, sha256, type UniqueImage } from '../helpers/images.js';
import { startTestMirror, storedSoon, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const ALICE = basic('alice', 'alice-pw');
const TIMEOUTS = { connect: '5s', headers: '30s', body: '60s' };
const SKOPEO_MS = 90_000;

type Kind = 'blob' | 'manifest';
type Method = 'GET' | 'HEAD';

interface Probe {
  kind: Kind;
  method: Method;
  /** Sends `If-None-Match: "<digest>"`: a 304 would tell the client the digest is cached. */
  conditional: boolean;
}

const PROBES: Probe[] = (['blob', 'manifest'] as const).flatMap((kind) =>
  [false, true].flatMap((conditional) => (['GET', 'HEAD'] as const).map((method) => ({ kind, method, conditional }))),
);

const probeName = ({ kind, method, conditional }: Probe) =>
  `${method} ${kind === 'blob' ? 'blob' : 'manifest by digest'}${conditional ? ' with If-None-Match' : ''}`;

const UNKNOWN: Record<Kind, string> = { blob: 'BLOB_UNKNOWN', manifest: 'MANIFEST_UNKNOWN' };

/** How a client names one repository of the open upstream. */
interface RouteForm {
  label: string;
  path(kind: Kind, digest: string): string;
}

const resource = (kind: Kind, digest: string) => `${kind === 'blob' ? 'blobs' : 'manifests'}/${digest}`;

/** The three ways to reach `open.test`: by default (`defaultName`), with `?ns=`, and with the path prefix. */
function openRoutes(defaultName: string, name: string): RouteForm[] {
  return [
    { label: `default route /v2/${defaultName}/…`, path: (k, d) => `/v2/${defaultName}/${resource(k, d)}` },
    { label: `?ns=open.test /v2/${name}/…?ns=open.test`, path: (k, d) => `/v2/${name}/${resource(k, d)}?ns=open.test` },
    { label: `path prefix /v2/open.test/${name}/…`, path: (k, d) => `/v2/open.test/${name}/${resource(k, d)}` },
  ];
}

interface Identity {
  label: string;
  authorization?: string;
}

/** Sends one probe for `digest` to `path` on the mirror. */
function send(mirror: TestMirror, path: string, { kind, method, conditional }: Probe, digest: string, authorization?: string): Promise<RawResponse> {
  const headers: Record<string, string> = {};
  if (kind === 'manifest') headers.Accept = MANIFEST_ACCEPT;
  if (conditional) headers['If-None-Match'] = `"${digest}"`;
  if (authorization) headers.Authorization = authorization;
  return raw(`${mirror.url}${path}`, { method, headers, timeoutMs: 60_000 });
}

function describeAnswer(method: string, path: string, res: RawResponse): string {
  const cache = res.headers['x-mirror-cache'];
  const json = /json/.test(String(res.headers['content-type'])) && errorCode(res) !== undefined;
  const body = res.body.length === 0 ? 'no body' : json ? res.body.toString('utf8', 0, 300) : `${res.body.length} bytes, ${sha256(res.body)}`;
  return `${method} ${path} answered ${res.status}${cache ? ` (X-Mirror-Cache: ${String(cache)})` : ''}, ${body}`;
}

/** The OCI error code of a JSON error body, or undefined. */
function errorCode(res: RawResponse): string | undefined {
  try {
    return (JSON.parse(res.body.toString()) as { errors?: { code?: string }[] }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

/** The mirror refused: `status` with `code` (the JSON body only on a GET), and none of the bytes. */
function expectRefused(res: RawResponse, probe: Probe, path: string, status: number, code: string, secret?: Buffer): void {
  const answer = describeAnswer(probe.method, path, res);
  expect(res.status, answer).toBe(status);
  if (probe.method === 'GET') expect(errorCode(res), answer).toBe(code);
  if (secret) expect(res.body.includes(secret), answer).toBe(false);
}

/** What the attacks need: a mirror holding the private image, and which digests to ask for. */
interface Target {
  mirror: TestMirror;
  blob: { digest: string; bytes: Buffer };
  manifest: { digest: string; bytes: Buffer };
}

const digestOf = (t: Target, kind: Kind) => (kind === 'blob' ? t.blob : t.manifest);

/**
 * One test per route form, identity and probe: each must answer `status` with `code`
 * (404 and the unknown code of its kind when `status` is absent).
 */
function attacks(target: () => Target, routes: RouteForm[], identities: Identity[], expected?: { status: number; code: string }): void {
  for (const route of routes) {
    describe(route.label, () => {
      for (const who of identities) {
        for (const probe of PROBES) {
          const status = expected?.status ?? 404;
          const code = expected?.code ?? UNKNOWN[probe.kind];
          it(`${probeName(probe)}, ${who.label} → ${status} ${code}`, async () => {
            const t = target();
            const { digest, bytes } = digestOf(t, probe.kind);
            const path = route.path(probe.kind, digest);
            const res = await send(t.mirror, path, probe, digest, who.authorization);
            expectRefused(res, probe, path, status, code, bytes);
          });
        }
      }
    });
  }
}

describe.skipIf(!requireTools(['docker-registry', 'skopeo']))('cached content is served only through routes that may see it (#10)', () => {
  let work: string;
  let priv: RunningRegistry | undefined;
  let open: RunningRegistry | undefined;
  let privProxy: CountingProxy | undefined;
  let openProxy: CountingProxy | undefined;
  let pulls = 0;
  const robot = { Authorization: basic('robot', 'robot-pw') };

  const pullDir = () => join(work, `pull-${++pulls}`);
  const resetCounts = () => {
    openProxy!.reset();
    privProxy!.reset();
  };
  /** Every upstream request either proxy saw since the last reset, as `METHOD path` lines. */
  const upstreamRequests = () => [
    ...openProxy!.requests.map((r) => `open.test ${r.method} ${r.path}`),
    ...privProxy!.requests.map((r) => `priv.test ${r.method} ${r.path}`),
  ];
  const upstreamGets = (digest: string) => openProxy!.count('GET', `/blobs/${digest}`) + privProxy!.count('GET', `/blobs/${digest}`);

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'oci-e2e-isolation-'));
    const hash = (p: string) => bcrypt.hashSync(p, 5);
    await writeFile(join(work, 'htpasswd'), `alice:${hash('alice-pw')}\nrobot:${hash('robot-pw')}\n`);
    await writeFile(join(work, 'robot-password'), 'robot-pw\n');
    [priv, open] = await Promise.all([
      startRegistry({ auth: { htpasswd: { realm: 'private', path: join(work, 'htpasswd') } } }),
      startRegistry(),
    ]);
    [privProxy, openProxy] = await Promise.all([startCountingProxy(priv.url), startCountingProxy(open.url)]);
  });

  afterAll(async () => {
    await Promise.allSettled([privProxy?.close(), openProxy?.close()]);
    await Promise.allSettled([priv?.destroy(), open?.destroy()]);
    await terminateAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const configs: { label: string; priv: () => NonNullable<MirrorConfigInput['upstreams']>[number] }[] = [
    {
      label: 'priv.test forwards clients’ credentials (forwardCredentials: true)',
      priv: () => ({ name: 'priv.test', url: privProxy!.url, forwardCredentials: true, timeouts: TIMEOUTS }),
    },
    {
      label: 'priv.test is read with a configured account marked private: true',
      priv: () => ({
        name: 'priv.test',
        url: privProxy!.url,
        username: 'robot',
        passwordFile: join(work, 'robot-password'),
        private: true,
        timeouts: TIMEOUTS,
      }),
    },
  ];

  for (const config of configs) {
    describe(config.label, () => {
      let secret: UniqueImage;
      let dataDir: string;
      const running = new Set<TestMirror>();
      let primary: TestMirror;

      const mirrorConfig = (): Partial<MirrorConfigInput> => ({
        upstreams: [{ name: 'open.test', url: openProxy!.url, default: true, timeouts: TIMEOUTS }, config.priv()],
      });
      const start = async (options: { dataDir?: string } = {}) => {
        const m = await startTestMirror(openProxy!.url, mirrorConfig(), options);
        running.add(m);
        return m;
      };
      const stop = async (m: TestMirror) => {
        running.delete(m);
        await m.close(1000);
      };
      /** Layer 0 is later pushed to the open registry too (the positive cases); layer 1 never is. */
      const sharedLayer = () => secret.image.layers[0]!;
      const secretLayer = () => secret.image.layers[1]!;
      const targetOn = (mirror: () => TestMirror) => (): Target => ({
        mirror: mirror(),
        blob: { digest: secretLayer().digest, bytes: secretLayer().bytes! },
        manifest: { digest: secret.fixture.digest, bytes: secret.image.manifest.bytes! },
      });
      const identities: Identity[] = [
        { label: 'anonymous' },
        { label: 'with alice’s valid priv.test credentials', authorization: ALICE },
      ];
      const routes = openRoutes('library/anything', 'x');

      beforeAll(async () => {
        secret = await pushUniqueImage({ url: priv!.url, headers: robot }, { name: 'secret/app', tag: '1.0' });
        primary = await start();
        dataDir = primary.dataDir;
        // The real pull, by an authorized client: from here on the mirror holds the private image.
        const dir = pullDir();
        await skopeoCopy(`${primary.host}/priv.test/${secret.fixture.ref}`, dir, { creds: 'alice:alice-pw', timeoutMs: SKOPEO_MS });
        await verifyDirPull(dir, secret.fixture);
      });

      afterAll(async () => {
        await Promise.allSettled([...running].map((m) => m.close(1000)));
        if (dataDir) await rm(dataDir, { recursive: true, force: true });
      });

      it('holds the private image after alice’s skopeo pull (the precondition of every attack)', async () => {
        for (const d of [secret.fixture.digest, ...secret.fixture.blobs.map((b) => b.digest)]) await storedSoon(primary.mirror.storage, d);
      });

      it('still serves the private layer to alice through priv.test/secret/app, with no GET upstream (positive)', async () => {
        resetCounts();
        const path = `/v2/priv.test/secret/app/blobs/${secretLayer().digest}`;
        const res = await raw(`${primary.url}${path}`, { headers: { Authorization: ALICE } });
        expect(res.status, describeAnswer('GET', path, res)).toBe(200);
        expect(sha256(res.body)).toBe(secretLayer().digest);
        expect(upstreamGets(secretLayer().digest), upstreamRequests().join('\n')).toBe(0);
      });

      it('refuses the private layer to alice through priv.test/secret/none, which does not exist → 404 BLOB_UNKNOWN', async () => {
        const path = `/v2/priv.test/secret/none/blobs/${secretLayer().digest}`;
        const res = await raw(`${primary.url}${path}`, { headers: { Authorization: ALICE } });
        expectRefused(res, { kind: 'blob', method: 'GET', conditional: false }, path, 404, 'BLOB_UNKNOWN', secretLayer().bytes);
      });

      describe('attacks through the open upstream', () => {
        attacks(targetOn(() => primary), routes, identities);
      });

      // Tag lists are cached per upstream and repository: a private upstream's list must reach
      // only its own authorized clients, by no other route, and never from that cache.
      describe('the tag list of priv.test/secret/app, after alice listed it', () => {
        const list = (path: string, authorization?: string) => raw(`${primary.url}${path}`, { headers: authorization ? { Authorization: authorization } : {} });
        beforeAll(async () => {
          const res = await list('/v2/priv.test/secret/app/tags/list', ALICE);
          expect(res.status, describeAnswer('GET', 'tags/list', res)).toBe(200);
          expect(JSON.parse(res.body.toString()).tags).toEqual(['1.0']);
        });

        it('asks priv.test again for alice’s next list, with her credentials (nothing is served from the list cache)', async () => {
          resetCounts();
          const res = await list('/v2/priv.test/secret/app/tags/list', ALICE);
          expect(res.status).toBe(200);
          expect(privProxy!.count('GET', '/v2/secret/app/tags/list'), upstreamRequests().join('\n')).toBeGreaterThan(0);
        });

        it('refuses it to an anonymous client through priv.test → 401', async () => {
          const res = await list('/v2/priv.test/secret/app/tags/list');
          expect(res.status, describeAnswer('GET', 'tags/list', res)).toBe(401);
          expect(res.body.includes('1.0')).toBe(false);
        });

        for (const path of ['/v2/secret/app/tags/list', '/v2/secret/app/tags/list?ns=open.test', '/v2/open.test/secret/app/tags/list']) {
          it(`answers ${path} from open.test, which has no such repository → 404 NAME_UNKNOWN, anonymous and as alice`, async () => {
            for (const who of [undefined, ALICE]) {
              const res = await list(path, who);
              expect(res.status, describeAnswer('GET', path, res)).toBe(404);
              expect(errorCode(res)).toBe('NAME_UNKNOWN');
            }
          });
        }
      });

      // priv.test itself: alice may read secret/other (and is confirmed for it), which does not hold secret/app's content.
      describe('another repository of priv.test that alice may read', () => {
        beforeAll(async () => {
          const other = await pushUniqueImage({ url: priv!.url, headers: robot }, { name: 'secret/other', tag: '1.0' });
          const dir = pullDir();
          await skopeoCopy(`${primary.host}/priv.test/${other.fixture.ref}`, dir, { creds: 'alice:alice-pw', timeoutMs: SKOPEO_MS });
          await verifyDirPull(dir, other.fixture);
        });

        const otherRoute: RouteForm = { label: 'priv.test/secret/other /v2/priv.test/secret/other/…', path: (k, d) => `/v2/priv.test/secret/other/${resource(k, d)}` };
        attacks(targetOn(() => primary), [otherRoute], [{ label: 'as alice, just confirmed for secret/other', authorization: ALICE }]);
      });

      // Fills are shared by digest too: a client of an unlinked route must not join one in flight.
      describe('a fill in flight, started by alice through priv.test/secret/fresh', () => {
        let fresh: UniqueImage;
        const probes: Probe[] = [
          { kind: 'blob', method: 'GET', conditional: false },
          { kind: 'blob', method: 'HEAD', conditional: false },
          { kind: 'blob', method: 'GET', conditional: true },
        ];
        beforeAll(async () => {
          fresh = await pushUniqueImage({ url: priv!.url, headers: robot }, { name: 'secret/fresh', tag: '1.0', layers: probes.length });
        });

        probes.forEach((probe, i) => {
          it(`default route /v2/library/anything/…: ${probeName(probe)}, anonymous, while the fill is held → 404 BLOB_UNKNOWN, not a JOIN`, async () => {
            const layer = fresh.image.layers[i]!;
            const hold = privProxy!.hold('GET', `/blobs/${layer.digest}`);
            const legit = raw(`${primary.url}/v2/priv.test/secret/fresh/blobs/${layer.digest}`, { headers: { Authorization: ALICE }, timeoutMs: 60_000 });
            try {
              const early = legit.then((r) => Promise.reject(new Error(`alice's GET answered ${r.status} before its fill reached priv.test`)));
              early.catch(() => {}); // reported by the race below, if it comes first
              await Promise.race([hold.arrived, early]);
              expect(primary.mirror.fills.get(layer.digest), 'the fill is in flight').toBeDefined();
              const path = `/v2/library/anything/blobs/${layer.digest}`;
              let settled = false;
              const attack = send(primary, path, probe, layer.digest).finally(() => (settled = true));
              // Today the attack joins the fill and waits for it; released after a bounded wait, it gets the bytes.
              await waitFor(() => settled || openProxy!.count('HEAD', path) > 0, 10_000, 'the attack to be answered').catch(() => {});
              hold.release();
              expectRefused(await attack, probe, path, 404, 'BLOB_UNKNOWN', layer.bytes);
            } finally {
              hold.release();
              const res = await legit;
              expect(sha256(res.body), 'alice still gets her layer').toBe(layer.digest);
            }
          });
        });
      });

      describe('an unlinked digest is asked of the route’s upstream by HEAD, never fetched', () => {
        for (const kind of ['blob', 'manifest'] as const) {
          it(`default route GET ${kind}: open.test gets a HEAD of /v2/library/unlinked/${resource(kind, '<digest>')} and no GET`, async () => {
            const { digest } = digestOf(targetOn(() => primary)(), kind);
            resetCounts();
            const path = `/v2/library/unlinked/${resource(kind, digest)}`;
            const res = await send(primary, path, { kind, method: 'GET', conditional: false }, digest);
            expectRefused(res, { kind, method: 'GET', conditional: false }, path, 404, UNKNOWN[kind]);
            const seen = upstreamRequests().join('\n') || '(no upstream request)';
            expect(openProxy!.count('HEAD', path), seen).toBeGreaterThanOrEqual(1);
            expect(openProxy!.count('GET', resource(kind, digest)) + privProxy!.count('GET', resource(kind, digest)), seen).toBe(0);
          });
        }
      });

      describe('a second mirror instance on the same storage', () => {
        let replica: TestMirror;
        beforeAll(async () => {
          replica = await start({ dataDir });
        });
        afterAll(async () => {
          if (replica) await stop(replica);
        });

        it('serves the private layer to alice through priv.test/secret/app with no GET upstream (positive)', async () => {
          resetCounts();
          const path = `/v2/priv.test/secret/app/blobs/${secretLayer().digest}`;
          const res = await raw(`${replica.url}${path}`, { headers: { Authorization: ALICE } });
          expect(res.status, describeAnswer('GET', path, res)).toBe(200);
          expect(res.headers['x-mirror-cache']).toBe('HIT');
          expect(sha256(res.body)).toBe(secretLayer().digest);
          expect(upstreamGets(secretLayer().digest), upstreamRequests().join('\n')).toBe(0);
        });

        attacks(targetOn(() => replica), routes, identities);
      });

      // The same bytes, pushed to the open registry too: the open route may now see them.
      for (const kind of ['blob', 'manifest'] as const) {
        describe(`a ${kind} the open registry holds too: confirmed through the open route (positive)`, () => {
          const repo = kind === 'blob' ? 'shared/base' : 'shared/copy';
          let digest: string;
          let bytes: Buffer;
          let first: { res: RawResponse; requests: string[]; heads: number; gets: number };
          let second: { res: RawResponse; requests: string[] };
          const probe: Probe = { kind, method: 'GET', conditional: false };

          beforeAll(async () => {
            if (kind === 'blob') {
              digest = sharedLayer().digest;
              bytes = sharedLayer().bytes!;
              await pushBlob(open!, repo, sharedLayer());
            } else {
              digest = secret.fixture.digest;
              bytes = secret.image.manifest.bytes!;
              await pushImage(open!, repo, '1.0', secret.image);
            }
            const path = `/v2/${repo}/${resource(kind, digest)}`;
            resetCounts();
            const res = await send(primary, path, probe, digest);
            first = {
              res,
              requests: upstreamRequests(),
              heads: openProxy!.count('HEAD', path),
              gets: openProxy!.count('GET', resource(kind, digest)) + privProxy!.count('GET', resource(kind, digest)),
            };
            resetCounts();
            second = { res: await send(primary, path, probe, digest), requests: upstreamRequests() };
          });

          it(`GET /v2/${repo}/${resource(kind, '<digest>')} answers 200 with the right bytes`, () => {
            expect(first.res.status, describeAnswer('GET', repo, first.res)).toBe(200);
            expect(sha256(first.res.body)).toBe(digest);
            expect(first.res.body.equals(bytes)).toBe(true);
          });

          it(`… and no upstream got a GET of the ${kind} (the bytes come from storage)`, () => {
            expect(first.gets, first.requests.join('\n')).toBe(0);
          });

          it(`… after open.test confirmed it: a HEAD of /v2/${repo}/${resource(kind, '<digest>')}`, () => {
            expect(first.heads, first.requests.join('\n') || '(no upstream request)').toBeGreaterThanOrEqual(1);
          });

          it('a second GET is served with no upstream request at all (linked now)', () => {
            expect(second.res.status, describeAnswer('GET', repo, second.res)).toBe(200);
            expect(sha256(second.res.body)).toBe(digest);
            expect(second.requests).toEqual([]);
          });
        });
      }

      it('still refuses the shared layer through /v2/library/anything, which open.test does not hold it in → 404 BLOB_UNKNOWN', async () => {
        const path = `/v2/library/anything/blobs/${sharedLayer().digest}`;
        const res = await raw(`${primary.url}${path}`);
        expectRefused(res, { kind: 'blob', method: 'GET', conditional: false }, path, 404, 'BLOB_UNKNOWN', sharedLayer().bytes);
      });

      describe('after a restart on the same storage', () => {
        let restarted: TestMirror;
        beforeAll(async () => {
          await stop(primary);
          restarted = await start({ dataDir });
        });

        for (const kind of ['blob', 'manifest'] as const) {
          const repo = kind === 'blob' ? 'shared/base' : 'shared/copy';
          it(`GET /v2/${repo}/${resource(kind, '<digest>')} is still a HIT with no upstream request (links survive)`, async () => {
            const { digest } = kind === 'blob' ? sharedLayer() : secret.fixture;
            resetCounts();
            const path = `/v2/${repo}/${resource(kind, digest)}`;
            const res = await send(restarted, path, { kind, method: 'GET', conditional: false }, digest);
            expect(res.status, describeAnswer('GET', path, res)).toBe(200);
            expect(res.headers['x-mirror-cache']).toBe('HIT');
            expect(sha256(res.body)).toBe(digest);
            expect(upstreamRequests()).toEqual([]);
          });
        }

        attacks(targetOn(() => restarted), routes.slice(0, 1), identities.slice(0, 1));
      });
    });
  }

  describe('a protected mirror: auth.rules cannot be bypassed by naming another repository’s digest', () => {
    let mirror: TestMirror | undefined;
    let small: UniqueImage;
    let medium: UniqueImage;
    const X = basic('x', 'x-pw');

    beforeAll(async () => {
      const hash = (p: string) => bcrypt.hashSync(p, 5);
      await writeFile(join(work, 'mirror-htpasswd'), `x:${hash('x-pw')}\ny:${hash('y-pw')}\n`);
      // Disjoint layers: fresh random content in each.
      small = await pushUniqueImage(open!, { name: 'library/small', tag: '1' });
      medium = await pushUniqueImage(open!, { name: 'library/medium', tag: '1' });
      mirror = await startTestMirror(openProxy!.url, {
        upstreams: [{ name: 'open.test', url: openProxy!.url, default: true, timeouts: TIMEOUTS }],
        auth: {
          htpasswd: join(work, 'mirror-htpasswd'),
          rules: [
            { users: ['x'], repositories: ['open.test/library/small'] },
            { users: ['y'], repositories: ['open.test/library/medium'] },
          ],
        },
      });
      const dir = pullDir();
      await skopeoCopy(`${mirror.host}/${medium.fixture.ref}`, dir, { creds: 'y:y-pw', timeoutMs: SKOPEO_MS });
      await verifyDirPull(dir, medium.fixture);
    });

    afterAll(async () => {
      await mirror?.dispose();
    });

    const target = (): Target => ({
      mirror: mirror!,
      blob: { digest: medium.image.layers[0]!.digest, bytes: medium.image.layers[0]!.bytes! },
      manifest: { digest: medium.fixture.digest, bytes: medium.image.manifest.bytes! },
    });

    it('holds medium after y’s skopeo pull, and small shares none of its blobs (the precondition)', async () => {
      for (const d of [medium.fixture.digest, ...medium.fixture.blobs.map((b) => b.digest)]) await storedSoon(mirror!.mirror.storage, d);
      const smallDigests = new Set(small.fixture.blobs.map((b) => b.digest));
      expect(medium.fixture.blobs.filter((b) => smallDigests.has(b.digest))).toEqual([]);
    });

    it('lets x pull library/small with skopeo (positive)', async () => {
      const dir = pullDir();
      await skopeoCopy(`${mirror!.host}/${small.fixture.ref}`, dir, { creds: 'x:x-pw', timeoutMs: SKOPEO_MS });
      await verifyDirPull(dir, small.fixture);
    });

    describe('x asks library/small’s routes for medium’s layer and manifest', () => {
      attacks(target, openRoutes('library/small', 'library/small'), [{ label: 'as x', authorization: X }]);
    });

    describe('x asks library/medium itself (already refused)', () => {
      attacks(target, openRoutes('library/medium', 'library/medium'), [{ label: 'as x', authorization: X }], {
        status: 403,
        code: 'DENIED',
      });
    });
  });
});
