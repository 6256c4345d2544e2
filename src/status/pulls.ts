/**
 * Manifest GETs per repository since start, for "most pulled". The names come from clients,
 * so the map is capped: past `maxRepositories`, new names count into one `(other)` entry and
 * the memory stays bounded whatever anyone asks for.
 */
import type { Visible } from './privacy.js';

export const OTHER = '(other)';

export interface PullCounter {
  count(repository: string): void;
  /**
   * The most pulled first; ties by name. With `visible`, only the repositories it lets the
   * viewer see, and no `(other)`: that counts pulls of repositories the viewer may not pull.
   */
  top(n: number, visible?: Visible): Array<{ repository: string; pulls: number }>;
  /** Repositories tracked by name (not counting `(other)`). */
  readonly tracked: number;
}

export function createPullCounter(maxRepositories: number): PullCounter {
  const pulls = new Map<string, number>();
  let other = 0;
  return {
    count(repository) {
      const n = pulls.get(repository);
      if (n !== undefined) pulls.set(repository, n + 1);
      else if (pulls.size < maxRepositories) pulls.set(repository, 1);
      else other++;
    },
    top(n, visible) {
      const rows = [...pulls].filter(([repository]) => !visible || visible(repository)).map(([repository, count]) => ({ repository, pulls: count }));
      if (other > 0 && !visible) rows.push({ repository: OTHER, pulls: other });
      return rows.sort((a, b) => b.pulls - a.pulls || a.repository.localeCompare(b.repository)).slice(0, n);
    },
    get tracked() {
      return pulls.size;
    },
  };
}
