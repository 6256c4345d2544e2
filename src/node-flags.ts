/**
 * The node flags a mirror's server process runs with: `npm start`, deploy/systemd and the
 * cluster's workers pass them (test/deploy.test.ts keeps the first two in step with this list),
 * and so does `npm run bench`. V8 reads them once, at start, and node refuses the first in
 * NODE_OPTIONS: they go on node's command line. `oci-mirror` run as a bare command runs without
 * them, correctly, only with more GC work on a cold pull and more memory.
 *
 * `--initial-old-space-size=64`: a floor under the old generation's limit. Every socket read of
 * a fill is a new buffer outside V8's heap, and V8 counts such memory allocated since its last
 * full GC against that limit, which it otherwise keeps at 1.5–2.5 times the live heap: 11–27 MB
 * of room on the mirror's 16 MB. A cold pull then ran a full GC every 11–27 MB received (8 to 32
 * per 512 MiB, `--trace-gc`), although the young generation's own collections free those buffers
 * every 32 MB. With the floor it runs 2 to 4, for 15 % less CPU per GB on a cold pull (paired
 * runs: 4.23 against 3.59 s/GB, 5 pairs of 5; ten clients 0.67 against 0.53, 3 of 3). The price
 * is memory where the old generation fills with short-lived objects, as under a flood of small
 * requests: V8 lets it grow to the floor before a full GC (wrk on a 4 KB blob and a manifest,
 * 3 rounds: peak 149 against 182 MB). Idle: about 2 MB.
 *
 * `--max-semi-space-size=4`: a young generation of 2 × 4 MB instead of V8's 2 × 16. Those socket
 * buffers die young, and each young collection frees them: a quarter of the room is a quarter
 * of the garbage between collections. Measured in pairs, V8's default -> this: ten clients on a
 * cold 512 MiB blob, peak RSS 166 -> 146 MB at the same CPU, 0.52 s/GB (3 pairs); one client
 * 175 -> 160 MB, 3.05 -> 2.83 CPU s/GB (4 pairs); idle 84.5 -> 78.2 MB. The price is CPU on
 * small requests: wrk on a cached 4 KB blob 76 -> 80 µs a request, a manifest 69 -> 71 (5
 * rounds, `bench/flags-ab.ts`). 8 MB gave none of the peak back; 2 MB no more than 4 and costs 9 %.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--max-semi-space-size=4'];

/** The server flags `execArgv` lacks (a flag given with another value, in either of V8's spellings, counts as given). */
export function missingServerFlags(execArgv: readonly string[]): string[] {
  const name = (flag: string) => flag.split('=')[0]!.replaceAll('_', '-');
  const given = new Set(execArgv.map(name));
  return SERVER_NODE_FLAGS.filter((f) => !given.has(name(f)));
}

/** `execArgv` with each server flag the operator has not given added. */
export function withServerFlags(execArgv: readonly string[]): string[] {
  return [...execArgv, ...missingServerFlags(execArgv)];
}
