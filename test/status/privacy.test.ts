/**
 * status.json tells a viewer nothing it could not pull: a private upstream's fill held half-way
 * shows no digest, size or repository to anyone, and on a protected mirror each user sees the
 * fills, repositories and pulls its rules let it pull, by the same rules as its pulls.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { StatusSnapshot } from '../../src/status/index.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { raw, waitFor, type RawResponse } from '../helpers/http.js';
import { startTestMirror, type TestMirror } from '../helpers/mirror.js';
import { image } from './scenario.js';

const OPEN = 'open.test';
const SECRET = 'secret.test';
const PAYROLL = 'team/payroll';
/** Sizes no other figure on the page has: finding one means a held fill's size got out. */
const SIZES = { private: 1_234_567, small: 1_345_679, medium: 1_456_781 };
const HELD = 600_000;
const TOKENS = { x: 'token-of-user-x-0123456789', y: 'token-of-user-y-0123456789' };
const UPSTREAM_LOGIN = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
const timeouts = { connect: '2s', headers: '5s', body: '120s' };

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const done of cleanup.splice(0).reverse()) await done();
});

async function mirrorWith(auth: object = {}): Promise<{ m: TestMirror; upstream: FakeUpstream }> {
  const upstream = await startFakeUpstream();
  cleanup.push(() => upstream.close());
  const m = await startTestMirror(upstream.url, {
    upstreams: [
      { name: OPEN, url: upstream.url, timeouts },
      { name: SECRET, url: upstream.url, forwardCredentials: true, timeouts },
    ],
    auth,
  });
  cleanup.push(() => m.dispose());
  return { m, upstream };
}

/** Pulls `path` (a blob of `size` bytes under `/v2/<repo>/blobs/`) until its fill is held half-way, the client still reading. */
async function holdFill(m: TestMirror, upstream: FakeUpstream, repo: string, size: number, headers: Record<string, string>): Promise<string> {
  const digest = upstream.addBlob(randomBytes(size));
  let release!: () => void;
  upstream.faults.set(digest, { holdAt: HELD, hold: new Promise<void>((r) => (release = r)) });
  const client: Promise<RawResponse | undefined> = raw(`${m.url}/v2/${repo}/blobs/${digest}`, { headers, timeoutMs: 120_000 }).catch(() => undefined);
  // Runs before the mirror's dispose (cleanup goes in reverse), so the fill can end.
  cleanup.push(async () => {
    release();
    await client;
  });
  await waitFor(() => (m.mirror.fills.get(digest)?.received ?? 0) >= HELD, 10_000, `the fill of ${repo} to reach its hold`);
  return digest;
}

async function pull(m: TestMirror, repo: string, tag: string, headers: Record<string, string>) {
  const res = await raw(`${m.url}/v2/${repo}/manifests/${tag}`, { headers });
  expect(res.status, repo).toBe(200);
}

async function statusAs(m: TestMirror, authorization?: string): Promise<{ status: number; snapshot: StatusSnapshot; text: string }> {
  const res = await raw(`${m.url}/_mirror/status.json`, { headers: authorization ? { Authorization: authorization } : {} });
  const text = res.body.toString();
  return { status: res.status, snapshot: res.status === 200 ? (JSON.parse(text) as StatusSnapshot) : ({} as StatusSnapshot), text };
}

/** status.json once storage has been read for the largest repositories. */
async function settled(m: TestMirror, authorization?: string) {
  let seen: Awaited<ReturnType<typeof statusAs>> | undefined;
  await waitFor(async () => (seen = await statusAs(m, authorization)).snapshot.largest?.computedAt != null, 10_000, 'the largest repositories');
  return seen!;
}

function expectNothingOf(text: string, what: { digest: string; size: number; repository: string }) {
  expect(text).not.toContain(what.digest.slice('sha256:'.length));
  expect(text).not.toContain(String(what.size));
  expect(text).not.toContain(what.repository);
}

describe('status.json and private upstreams', () => {
  it('shows no digest, size or repository of a private upstream`s fill in flight, only that there is one; nor does /metrics', async () => {
    const { m, upstream } = await mirrorWith();
    image(upstream, PAYROLL, '1.0', 1000);
    await pull(m, `${SECRET}/${PAYROLL}`, '1.0', { Authorization: UPSTREAM_LOGIN });
    const digest = await holdFill(m, upstream, `${SECRET}/${PAYROLL}`, SIZES.private, { Authorization: UPSTREAM_LOGIN });

    const { status, snapshot, text } = await settled(m);
    expect(status).toBe(200);
    expect(snapshot.totals.fillsInFlight).toBe(1);
    expect(snapshot.fills).toEqual([]);
    expect(snapshot.hiddenFills).toBe(1);
    expect(snapshot.largest.repositories).toEqual([]);
    expect(snapshot.pulled).toEqual([]);
    expectNothingOf(text, { digest, size: SIZES.private, repository: PAYROLL });
    expect(text).not.toContain('payroll');

    const metrics = (await raw(`${m.url}/metrics`)).body.toString();
    expectNothingOf(metrics, { digest, size: SIZES.private, repository: PAYROLL });
  });

  it('on a protected mirror lists for each user only what its rules let it pull, and nothing private to anyone', async () => {
    const { m, upstream } = await mirrorWith({
      tokens: [
        { name: 'x', token: TOKENS.x },
        { name: 'y', token: TOKENS.y },
      ],
      rules: [
        { users: ['x'], repositories: [`${OPEN}/library/small`] },
        { users: ['y'], repositories: [`${OPEN}/library/medium`] },
      ],
    });
    const x = { Authorization: `Bearer ${TOKENS.x}` };
    const y = { Authorization: `Bearer ${TOKENS.y}` };
    for (const repo of ['library/small', 'library/medium', PAYROLL]) image(upstream, repo, '1.0', 1000);
    await pull(m, 'library/small', '1.0', x);
    await pull(m, 'library/medium', '1.0', y);
    await pull(m, `${SECRET}/${PAYROLL}`, '1.0', { Authorization: UPSTREAM_LOGIN });
    const fills = {
      small: { digest: await holdFill(m, upstream, 'library/small', SIZES.small, x), size: SIZES.small, repository: 'library/small' },
      medium: { digest: await holdFill(m, upstream, 'library/medium', SIZES.medium, y), size: SIZES.medium, repository: 'library/medium' },
      private: { digest: await holdFill(m, upstream, `${SECRET}/${PAYROLL}`, SIZES.private, { Authorization: UPSTREAM_LOGIN }), size: SIZES.private, repository: PAYROLL },
    };

    // The page asks for the same logins as a pull: an anonymous viewer sees nothing at all.
    expect((await statusAs(m)).status).toBe(401);

    for (const [who, authorization, mine, theirs] of [
      ['x', x.Authorization, fills.small, fills.medium],
      ['y', y.Authorization, fills.medium, fills.small],
    ] as const) {
      const { status, snapshot, text } = await settled(m, authorization);
      expect(status, who).toBe(200);
      expect(snapshot.totals.fillsInFlight, who).toBe(3);
      expect(snapshot.fills.map((f) => [f.digest, f.repository, f.size]), who).toEqual([[mine.digest, `${OPEN}/${mine.repository}`, mine.size]]);
      expect(snapshot.hiddenFills, who).toBe(2);
      expect(snapshot.largest.repositories.map((r) => r.repository), who).toEqual([`${OPEN}/${mine.repository}`]);
      expect(snapshot.pulled, who).toEqual([{ repository: `${OPEN}/${mine.repository}`, pulls: 1 }]);
      expectNothingOf(text, theirs);
      expectNothingOf(text, fills.private);
    }
  });
});
