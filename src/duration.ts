/** The config's one duration syntax, shared by every section that takes one. */
import { z } from 'zod';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration: a number of seconds, or a string such as `250ms`, `30s`, `5m`, `2h`, `7d`. Parsed to milliseconds. */
export const duration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return Math.round(v * 1000);
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(v.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (use a number of seconds, or e.g. 30s, 5m, 2h)` });
    return z.NEVER;
  }
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
});
