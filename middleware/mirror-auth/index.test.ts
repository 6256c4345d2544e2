/**
 * A protected mirror: htpasswd users and static tokens, per-repository rules, anonymous
 * patterns, and no secret in any answer.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../test/helpers/fake-upstream.js';
import { raw } from '../../test/helpers/http.js';
import { startTestMirror, type TestMirror } from '../../test/helpers/mirror.js';

const TOKEN = 'ci-token-0123456789abcdef';
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const code = (b: Buffer) => (JSON.parse(b.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code;

let upstream: FakeUpstream;
let mirror: TestMirror;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-auth-'));
  // Cost 4 keeps the test fast; the format is what `htpasswd -B` writes ($2y$).
  const hash = (p: string) => bcrypt.hashSync(p, 4).replace(/^\$2[ab]\$/, '$2y$');
  await writeFile(join(dir, 'htpasswd'), `alice:${hash('alice-pw')}\nbob:${hash('bob-pw')}\n`);
  upstream = await startFakeUpstream();
  for (const repo of ['team-a/app', 'team-b/app', 'library/alpine']) {
    upstream.addManifest(repo, '1.0', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', repo });
  }
  mirror = await startTestMirror(upstream.url, {
    auth: {
      htpasswd: join(dir, 'htpasswd'),
      tokens: [{ name: 'ci', token: TOKEN }],
      anonymous: ['registry.test/library/*'],
      rules: [
        { users: ['alice'], repositories: ['registry.test/team-a/**'] },
        { users: ['bob', 'ci'], repositories: ['registry.test/**'] },
      ],
    },
  });
});
afterAll(async () => {
  await mirror.dispose();
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (path: string, authorization?: string) =>
  raw(`${mirror.url}${path}`, { headers: authorization ? { Authorization: authorization } : {} });

describe('a protected mirror', () => {
  it('challenges anonymous clients at /v2/ with Basic, and accepts a user', async () => {
    const anon = await get('/v2/');
    expect(anon.status).toBe(200); // anonymous pulls of library/* are allowed, so /v2/ stays open
    const res = await get('/v2/', basic('alice', 'alice-pw'));
    expect(res.status).toBe(200);
    const wrong = await get('/v2/', basic('alice', 'nope'));
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toMatch(/^Basic realm=/);
    expect(code(wrong.body)).toBe('UNAUTHORIZED');
  });

  it('lets anonymous clients pull only what `anonymous` names', async () => {
    expect((await get('/v2/library/alpine/manifests/1.0')).status).toBe(200);
    const denied = await get('/v2/team-a/app/manifests/1.0');
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toMatch(/^Basic/);
  });

  it('applies per-repository rules to users and tokens', async () => {
    expect((await get('/v2/team-a/app/manifests/1.0', basic('alice', 'alice-pw'))).status).toBe(200);
    const other = await get('/v2/team-b/app/manifests/1.0', basic('alice', 'alice-pw'));
    expect(other.status).toBe(403);
    expect(code(other.body)).toBe('DENIED');
    expect((await get('/v2/team-b/app/manifests/1.0', basic('bob', 'bob-pw'))).status).toBe(200);
    expect((await get('/v2/team-b/app/manifests/1.0', `Bearer ${TOKEN}`)).status).toBe(200);
    expect((await get('/v2/team-b/app/manifests/1.0', `Bearer ${TOKEN.slice(0, -1)}x`)).status).toBe(401);
  });

  it('never echoes a credential in an answer', async () => {
    const res = await get('/v2/team-b/app/manifests/1.0', basic('alice', 'alice-pw'));
    expect(res.body.toString()).not.toContain('alice-pw');
    const tok = await get('/v2/team-b/app/manifests/1.0', 'Bearer not-the-token-secret-value');
    expect(tok.body.toString()).not.toContain('not-the-token-secret-value');
  });
});
