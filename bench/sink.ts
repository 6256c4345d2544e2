/**
 * `npm run bench:sink`: where a cold fill's time goes, stage by stage, in this process. One
 * 512 MiB layer from nginx (sendfile) is received with undici and then, in turn:
 *
 *   curl → /dev/null                  the baseline: what the loopback and nginx give a C client
 *   undici, body consumed             the upstream client alone
 *   undici + sha256                   plus the project's DigestVerifier
 *   undici + spool, no hash           plus the project's SpoolWriter into a fresh file (no digest)
 *   undici + spool + sha256           the fill's whole sink, as a fill runs it (digest in the hash worker)
 *   new file, 1 MiB writes            the filesystem alone: what writing a fresh file costs here
 *
 * Each is run three times; the table gives medians in MB/s and ratios to undici alone. It
 * measures; it asserts nothing. The fill's readers (the clients) follow the sink, so a cold
 * pull through the mirror cannot be faster than its last two rows.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { checkDigest, DigestVerifier, SizeCheck } from '../src/digest.js';
import { SpoolHash } from '../src/fill/spool-hash.js';
import { parseDigest } from '../src/reference.js';
import { SpoolWriter } from '../src/fill/spool-writer.js';
import { bigLayer } from '../test/helpers/images.js';
import { mbps, pull } from './measure.js';
import { startNginx } from './servers.js';

const SIZE = 512 * 1024 * 1024;
const REPS = 3;

type Stage = { name: string; run: () => Promise<number> };

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<number>): Promise<number> {
  const started = performance.now();
  const bytes = await fn();
  return mbps(bytes, (performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'oci-mirror-sink-'));
  const layer = await bigLayer(SIZE, 'bench');
  if (!layer.path) throw new Error('bigLayer gave no file');
  const nginx = await startNginx(work, layer.path);
  const url = `${nginx.url}/blob`;
  const spoolPath = () => join(work, `${randomUUID()}.spool`);

  /** The fill's sink as fill.ts builds it: size check, spool writes, and (`hash`) the digest from the spool in the hash worker. */
  const sink = (hash: boolean) => async () => {
    const res = await request(url);
    const file = spoolPath();
    const handle = await open(file, 'w+');
    const sizeCheck = new SizeCheck(layer.size);
    const hasher = hash ? new SpoolHash(handle.fd, parseDigest(layer.digest)) : undefined;
    let end = 0;
    try {
      await pipeline(
        res.body,
        new SpoolWriter(handle, sizeCheck, () => {}, (e) => {
          end = e;
          hasher?.written(e);
        }),
      );
      sizeCheck.verify();
      if (hasher) checkDigest(parseDigest(layer.digest), await hasher.digest(end));
    } finally {
      await hasher?.close();
      await handle.close();
      await rm(file);
    }
    return end;
  };

  const stages: Stage[] = [
    {
      name: 'curl → /dev/null (baseline)',
      run: async () => {
        const p = await pull(url, layer.size, 120);
        if (!p.ok) throw new Error(p.error);
        // curl times itself: return bytes scaled so that `timed` reports curl's own speed.
        return p.bytes;
      },
    },
    {
      name: 'undici, body consumed',
      run: async () => {
        const res = await request(url);
        let n = 0;
        for await (const chunk of res.body as AsyncIterable<Buffer>) n += chunk.length;
        return n;
      },
    },
    {
      name: 'undici + sha256',
      run: async () => {
        const res = await request(url);
        const verifier = new DigestVerifier(layer.digest, layer.size);
        for await (const chunk of res.body as AsyncIterable<Buffer>) verifier.update(chunk);
        return verifier.verify();
      },
    },
    { name: 'undici + spool, no hash', run: sink(false) },
    { name: 'undici + spool + sha256 (the sink)', run: sink(true) },
    {
      name: 'new file, 1 MiB writes',
      run: async () => {
        const file = spoolPath();
        const handle = await open(file, 'w');
        const block = Buffer.alloc(1024 * 1024, 7);
        try {
          for (let at = 0; at < SIZE; at += block.length) await handle.write(block, 0, block.length, at);
        } finally {
          await handle.close();
          await rm(file);
        }
        return SIZE;
      },
    },
  ];

  try {
    const results = new Map<string, number[]>();
    for (let rep = 0; rep < REPS; rep++) {
      for (const stage of stages) {
        const speed = await timed(stage.run);
        results.set(stage.name, [...(results.get(stage.name) ?? []), speed]);
      }
    }
    const undici = median(results.get('undici, body consumed')!);
    process.stdout.write(`\n${'stage'.padEnd(38)} ${'MB/s'.padStart(7)} ${'min'.padStart(7)} ${'max'.padStart(7)}  ÷ undici\n`);
    for (const [name, speeds] of results) {
      const m = median(speeds);
      process.stdout.write(
        `${name.padEnd(38)} ${m.toFixed(0).padStart(7)} ${Math.min(...speeds).toFixed(0).padStart(7)} ${Math.max(...speeds).toFixed(0).padStart(7)}  ${(m / undici).toFixed(2).padStart(8)}\n`,
      );
    }
    process.stdout.write('\n(curl is timed with its process start; the others inside this process.)\n');
  } finally {
    await nginx.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
