/**
 * An upstream behind the Docker token handshake: Debian's docker-registry with `auth.token`
 * against a token server of the tests (ES256 JWTs from a key and certificate generated at start),
 * pulled through the mirror by skopeo:
 * - a configured account: the mirror exchanges its own credentials, once per scope, not per blob;
 * - forwarded credentials: each client's own credentials go to the token server, and a client
 *   the upstream refuses gets nothing cached that another client pulled;
 * - anonymous: the anonymous token flow for a public repository;
 * - a realm naming another host: the mirror never contacts it.
 * The token server records every request's headers: no upstream token and no credentials that
 * were not the mirror's to send ever reach it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorConfigInput } from '../../src/config.js';
import { raw } from '../helpers/http.js';
import { pushMultiLayerImage, pushTinyImage, type Fixture } from '../helpers/images.js';
import { startTestMirror, storedSoon, type TestMirror } from '../helpers/mirror.js';
import { terminateAll } from '../helpers/processes.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startTokenServer, type TokenRequest, type TokenServer } from '../helpers/token-server.js';
import { requireTools, skopeoCopy, verifyDirPull } from '../helpers/tools.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const PASSWORDS = { admin: 'admin-pw', robot: 'robot-pw', alice: 'alice-pw', bob: 'bob-pw' } as const;
type User = keyof typeof PASSWORDS;
const creds = (u: User) => `${u}:${PASSWORDS[u]}`;
const MIRROR_AGENT = 'koa-oci-mirror';
const PRIVATE = 'secret/app';
const PUBLIC = 'public/app';
const UPSTREAM_TIMEOUTS = { connect: '2s', headers: '5s', body: '5s' };
type UpstreamInput = NonNullable<MirrorConfigInput['upstreams']>[number];

describe.skipIf(!requireTools(['docker-registry', 'skopeo', 'openssl'], 'apt-get install docker-registry skopeo openssl'))(
  'a token-auth upstream behind the mirror',
  () => {
    let tokens: TokenServer | undefined;
    let registry: RunningRegistry | undefined;
    const mirrors: TestMirror[] = [];
    const registries: RunningRegistry[] = [];
    let secret: Fixture;
    let open: Fixture;
    let work: string;
    let robotPasswordFile: string;
    let pulls = 0;

    const pull = async (mirror: TestMirror, ref: string, fixture: Fixture, user?: User) => {
      const dir = join(work, `pull-${++pulls}`);
      await skopeoCopy(`${mirror.host}/${ref}`, dir, { all: true, creds: user && creds(user), timeoutMs: 20_000 });
      await verifyDirPull(dir, fixture);
    };
    const fromMirror = (requests: TokenRequest[]) => requests.filter((r) => r.headers['user-agent'] === MIRROR_AGENT);
    const mirrorOf = async (upstream: UpstreamInput, config: Partial<MirrorConfigInput> = {}) => {
      const mirror = await startTestMirror(upstream.url ?? registry!.url, { upstreams: [{ timeouts: UPSTREAM_TIMEOUTS, ...upstream }], ...config });
      mirrors.push(mirror);
      return mirror;
    };

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'oci-e2e-token-'));
      robotPasswordFile = join(work, 'robot-password');
      await writeFile(robotPasswordFile, `${PASSWORDS.robot}\n`);
      tokens = await startTokenServer({
        users: { ...PASSWORDS },
        grants: [
          { repository: PRIVATE, users: ['admin'], actions: ['pull', 'push'] },
          { repository: PRIVATE, users: ['robot', 'alice'], actions: ['pull'] },
          { repository: PUBLIC, users: ['admin'], actions: ['pull', 'push'] },
          { repository: PUBLIC, users: ['*'], anonymous: true, actions: ['pull'] },
          { repository: 'elsewhere/*', users: ['admin'], actions: ['pull', 'push'] },
          { repository: 'elsewhere/*', users: ['robot'], anonymous: true, actions: ['pull'] },
        ],
      });
      registry = await startRegistry({ auth: tokens.registryAuth() });
      registries.push(registry);
      const admin = { username: 'admin', password: PASSWORDS.admin };
      const push = async (name: string) => ({
        url: registry!.url,
        headers: { Authorization: `Bearer ${await tokens!.fetchToken(`repository:${name}:pull,push`, admin)}` },
      });
      secret = await pushMultiLayerImage(await push(PRIVATE), { name: PRIVATE, tag: 'v1' });
      open = await pushTinyImage(await push(PUBLIC), { name: PUBLIC, tag: 'v1' });
    });

    afterAll(async () => {
      await Promise.allSettled([...mirrors.map((m) => m.dispose()), ...registries.map((r) => r.destroy()), tokens?.close()]);
      await terminateAll();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('the registry itself refuses what the token does not grant', async () => {
      // The fixture is sound: without a token, and with a token that grants nothing, no manifest.
      const manifest = `${registry!.url}/v2/${PRIVATE}/manifests/v1`;
      const none = await raw(manifest);
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toContain(`realm="${tokens!.realm}"`);
      const bobs = await tokens!.fetchToken(`repository:${PRIVATE}:pull`, { username: 'bob', password: PASSWORDS.bob });
      const refused = await raw(manifest, { headers: { Authorization: `Bearer ${bobs}` } });
      expect(refused.status).toBe(401);
      expect(refused.headers['www-authenticate']).toContain('insufficient_scope');
    });

    describe('a configured account (username + passwordFile)', () => {
      let mirror: TestMirror;
      beforeAll(async () => {
        // tagTtl 0: every pull of the tag goes upstream, so a second pull must reuse the token.
        mirror = await mirrorOf(
          { name: 'private.test', url: registry!.url, username: 'robot', passwordFile: robotPasswordFile },
          { cache: { tagTtl: 0 } },
        );
      });

      it('pulls the private image with one token exchange for the whole image', async () => {
        const mark = tokens!.requests.length;
        await pull(mirror, `private.test/${secret.ref}`, secret);
        const seen = tokens!.since(mark);
        expect(seen).toHaveLength(1);
        expect(seen[0]).toMatchObject({
          user: 'robot',
          authorization: basic('robot', PASSWORDS.robot),
          service: tokens!.service,
          scopes: [`repository:${PRIVATE}:pull`],
          status: 200,
          granted: [{ type: 'repository', name: PRIVATE, actions: ['pull'] }],
        });
        expect(seen[0]!.headers['user-agent']).toBe(MIRROR_AGENT);
      });

      it('reuses the cached token on the next pull, though it goes upstream again', async () => {
        const mark = tokens!.requests.length;
        await pull(mirror, `private.test/${secret.ref}`, secret);
        const res = await raw(`${mirror.url}/v2/private.test/${PRIVATE}/manifests/v1`);
        expect(res.status).toBe(200);
        expect(res.headers['x-mirror-cache']).toBe('REVALIDATED');
        expect(tokens!.since(mark)).toEqual([]);
      });
    });

    describe('forwarding each client’s own credentials', () => {
      let mirror: TestMirror;
      let started: number;
      beforeAll(async () => {
        started = tokens!.requests.length;
        // The account is configured too: it must not stand in for a client.
        mirror = await mirrorOf({
          name: 'private.test',
          url: registry!.url,
          forwardCredentials: true,
          username: 'robot',
          passwordFile: robotPasswordFile,
        });
      });

      it('pulls with alice’s credentials, which are what the token server sees', async () => {
        const mark = tokens!.requests.length;
        await pull(mirror, `private.test/${secret.ref}`, secret, 'alice');
        const seen = tokens!.since(mark);
        expect(seen.length).toBeGreaterThan(0);
        for (const r of seen) {
          expect(r).toMatchObject({ user: 'alice', authorization: basic('alice', PASSWORDS.alice), scopes: [`repository:${PRIVATE}:pull`] });
          expect(r.headers['user-agent']).toBe(MIRROR_AGENT);
        }
        // One exchange for alice's scope, not one per blob.
        expect(seen).toHaveLength(1);
        await storedSoon(mirror.mirror.storage, secret.blobs[0]!.digest);
      });

      it('refuses the cached image to an anonymous client without asking anyone', async () => {
        const mark = tokens!.requests.length;
        for (const url of urlsOf(mirror, secret)) {
          const res = await raw(url);
          expect(res.status, url).toBe(401);
          expect(res.headers['www-authenticate']).toMatch(/^Basic/);
          expect(res.body.toString()).not.toContain('"schemaVersion"');
        }
        await expect(pull(mirror, `private.test/${secret.ref}`, secret)).rejects.toThrow();
        expect(fromMirror(tokens!.since(mark))).toEqual([]);
      });

      it('refuses bob, a valid user without a grant, the copy alice pulled a second earlier', async () => {
        const mark = tokens!.requests.length;
        for (const url of urlsOf(mirror, secret)) {
          const res = await raw(url, { headers: { Authorization: basic('bob', PASSWORDS.bob) } });
          expect([401, 403], `${url} answered ${res.status}`).toContain(res.status);
          expect(res.body.toString()).not.toContain('"schemaVersion"');
          expect(res.headers['x-mirror-cache']).toBeUndefined();
        }
        await expect(pull(mirror, `private.test/${secret.ref}`, secret, 'bob')).rejects.toThrow();
        // The upstream was asked with bob's own credentials, and granted him nothing.
        const seen = fromMirror(tokens!.since(mark));
        expect(seen.length).toBeGreaterThan(0);
        for (const r of seen) expect(r).toMatchObject({ user: 'bob', authorization: basic('bob', PASSWORDS.bob), granted: [] });
      });

      it('answers a wrong password with 401 and a Basic challenge, as the token server refused it', async () => {
        const mark = tokens!.requests.length;
        const res = await raw(urlsOf(mirror, secret)[0]!, { headers: { Authorization: basic('alice', 'guess') } });
        // The token server's 401 is a refusal of these credentials, not an outage: the client must
        // be asked to log in again (401 + challenge), not told to retry later (503).
        const seen = fromMirror(tokens!.since(mark));
        expect(seen.map((r) => [r.claimed, r.status])).toEqual([['alice', 401]]);
        expect(res.body.toString()).not.toContain('guess');
        expect(res.status, res.body.toString()).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Basic/);
      });

      it('still serves alice from the cache', async () => {
        for (const url of urlsOf(mirror, secret)) {
          const res = await raw(url, { headers: { Authorization: basic('alice', PASSWORDS.alice) } });
          expect(res.status, url).toBe(200);
        }
        // The configured account never went to the token server from this mirror.
        const named = tokens!.since(started).map((r) => r.claimed);
        expect(named).toContain('alice');
        expect(named).not.toContain('robot');
      });
    });

    describe('anonymous', () => {
      let mirror: TestMirror;
      beforeAll(async () => {
        mirror = await mirrorOf({ name: 'public.test', url: registry!.url });
      });

      it('pulls a public repository through the anonymous token flow', async () => {
        const mark = tokens!.requests.length;
        await pull(mirror, `public.test/${open.ref}`, open);
        const seen = tokens!.since(mark);
        expect(seen).toHaveLength(1);
        expect(seen[0]).toMatchObject({ scopes: [`repository:${PUBLIC}:pull`], granted: [{ type: 'repository', name: PUBLIC, actions: ['pull'] }] });
        expect(seen[0]!.headers.authorization).toBeUndefined();
        expect(seen[0]!.user).toBeUndefined();
      });

      it('gets nothing private with an anonymous token, and passes on no client’s login', async () => {
        const mark = tokens!.requests.length;
        // alice may read it, but this upstream does not forward credentials: hers stay at the mirror.
        const res = await raw(`${mirror.url}/v2/public.test/${PRIVATE}/manifests/v1`, {
          headers: { Authorization: basic('alice', PASSWORDS.alice) },
        });
        expect(res.status).toBe(401);
        expect(res.body.toString()).not.toContain('"schemaVersion"');
        const seen = tokens!.since(mark);
        expect(seen.length).toBeGreaterThan(0);
        for (const r of seen) {
          expect(r.headers.authorization).toBeUndefined();
          expect(r.granted).toEqual([]);
        }
      });
    });

    describe('a registry whose token realm names another host', () => {
      let foreign: RunningRegistry;
      let image: Fixture;
      beforeAll(async () => {
        // The same token server under a host name that is not the upstream's (the CVE-2026-33540 case).
        foreign = await startRegistry({ auth: tokens!.registryAuth(`http://localhost:${tokens!.port}/token`) });
        registries.push(foreign);
        // Pushed with a token from the real address: the realm would hand the mirror a working token too.
        const token = await tokens!.fetchToken('repository:elsewhere/app:pull,push', { username: 'admin', password: PASSWORDS.admin });
        image = await pushTinyImage({ url: foreign.url, headers: { Authorization: `Bearer ${token}` } }, { name: 'elsewhere/app' });
      });

      it('never contacts the realm, with or without credentials, and says why', async () => {
        const withAccount = await mirrorOf({ name: 'foreign.test', url: foreign.url, username: 'robot', passwordFile: robotPasswordFile });
        const anonymous = await mirrorOf({ name: 'foreign.test', url: foreign.url });
        const mark = tokens!.requests.length;
        for (const mirror of [withAccount, anonymous]) {
          const res = await raw(`${mirror.url}/v2/foreign.test/${image.name}/manifests/${image.tag}`);
          expect(res.status).toBe(403);
          expect(res.body.toString()).toMatch(/refusing token realm localhost/);
          await expect(pull(mirror, `foreign.test/${image.ref}`, image)).rejects.toThrow(/refusing token realm localhost/);
        }
        expect(tokens!.since(mark)).toEqual([]);
      });
    });

    describe('no leaks to the token server', () => {
      it('got Authorization only where the mirror held credentials for it, and never a token', () => {
        const mirrorRequests = fromMirror(tokens!.requests);
        expect(mirrorRequests.length).toBeGreaterThan(0);
        for (const r of mirrorRequests) {
          if (r.authorization === undefined) continue;
          // Basic, with credentials that were the mirror's (robot) or a client's for this upstream.
          expect(r.authorization).toMatch(/^Basic /);
          expect(['robot', 'alice', 'bob']).toContain(r.claimed);
        }
        // No issued token ever came back to the token server, in any header of any request.
        for (const r of tokens!.requests) {
          const headers = JSON.stringify(r.headers);
          expect(headers).not.toMatch(/bearer/i);
          for (const t of tokens!.issued) expect(headers.includes(t.split('.')[2]!)).toBe(false);
        }
      });
    });
  },
);

/** The manifest (by tag and by digest) and every blob of `fixture` at the mirror. */
function urlsOf(mirror: TestMirror, fixture: Fixture): string[] {
  const base = `${mirror.url}/v2/private.test/${fixture.name}`;
  return [`${base}/manifests/${fixture.tag}`, `${base}/manifests/${fixture.digest}`, ...fixture.blobs.map((b) => `${base}/blobs/${b.digest}`)];
}
