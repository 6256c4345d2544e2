/** Reading Prometheus exposition text in tests: one parser for every suite that checks `/metrics`. */

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Exposition text into samples (comments skipped). */
export function parseMetrics(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of a metric's samples whose labels include `where` (0 when there are none: a counter never incremented). */
export function total(samples: MetricSample[], name: string, where: Record<string, string | string[]> = {}): number {
  const matches = (labels: Record<string, string>) =>
    Object.entries(where).every(([k, v]) => (Array.isArray(v) ? v.includes(labels[k] ?? '') : labels[k] === v));
  return samples.filter((s) => s.name === name && matches(s.labels)).reduce((sum, s) => sum + s.value, 0);
}
