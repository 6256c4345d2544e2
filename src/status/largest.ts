/**
 * The largest repositories in the cache. Storage is the only source (a restart forgets every
 * counter but not the cache), and reading it walks every tag's manifests, so the answer is kept
 * for `ttlMs`, computed at most once at a time, and never waited for: the page shows the last
 * answer (or "computing") while a new one is under way.
 */
import type { CachedImage } from '../admin/index.js';
import type { Visible } from './privacy.js';

export interface RepositorySize {
  repository: string;
  /**
   * Bytes of its cached images, each image (manifest digest) once. Layers that two different
   * images share are in both: listCached sizes images, not the union of their blobs.
   */
  bytes: number;
  tags: number;
}

export interface LargestReport {
  repositories: RepositorySize[];
  /** ms since the epoch; null until the first computation ends. */
  computedAt: number | null;
  /** A computation is under way. */
  pending: boolean;
  /** Why the last computation failed (its code or a short message). */
  error?: string;
}

export interface LargestOptions {
  /** The images whose repositories may be shown at all. */
  list: () => Promise<CachedImage[]>;
  ttlMs: number;
  /** Rows in a report. */
  limit: number;
  now?: () => number;
}

export interface Largest {
  /**
   * The last answer, as far as `visible` lets the viewer see it (absent: every row); starts a
   * new computation when it is older than `ttlMs`.
   */
  current(visible?: Visible): LargestReport;
  /** Resolves when the computation under way (if any) has ended; for tests and shutdown. */
  settled(): Promise<void>;
}

export function createLargest({ list, ttlMs, limit, now = Date.now }: LargestOptions): Largest {
  let last: { repositories: RepositorySize[]; at: number; error?: string } | undefined;
  let running: Promise<void> | undefined;

  function refresh(): void {
    running ??= list()
      .then(
        (images) => {
          // Every row is kept: which of them make a viewer's top `limit` depends on the viewer.
          last = { repositories: aggregate(images), at: now() };
        },
        (err: unknown) => {
          last = { repositories: last?.repositories ?? [], at: now(), error: describe(err) };
        },
      )
      .finally(() => {
        running = undefined;
      });
  }

  return {
    current(visible) {
      if (!last || now() - last.at >= ttlMs) refresh();
      const rows = last?.repositories ?? [];
      const repositories = (visible ? rows.filter((r) => visible(r.repository)) : rows).slice(0, limit);
      const report: LargestReport = { repositories, computedAt: last?.at ?? null, pending: running !== undefined };
      if (last?.error !== undefined) report.error = last.error;
      return report;
    },
    settled: () => running ?? Promise.resolve(),
  };
}

export function aggregate(images: readonly CachedImage[]): RepositorySize[] {
  const repos = new Map<string, { digests: Map<string, number>; tags: number }>();
  for (const image of images) {
    const name = `${image.upstream}/${image.repository}`;
    let repo = repos.get(name);
    if (!repo) repos.set(name, (repo = { digests: new Map(), tags: 0 }));
    repo.tags++;
    // Two tags of one image are one image's bytes.
    repo.digests.set(`${image.upstream}/${image.repository}@${image.digest}`, image.size);
  }
  return [...repos]
    .map(([repository, r]) => ({ repository, bytes: [...r.digests.values()].reduce((a, b) => a + b, 0), tags: r.tags }))
    .sort((a, b) => b.bytes - a.bytes || a.repository.localeCompare(b.repository));
}

/** A code where there is one, else a short message: the page is no place for paths. */
function describe(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.name : 'error';
}
