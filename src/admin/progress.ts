/**
 * How `oci-mirror warm` shows its work: on a terminal one status line, redrawn in place
 * (bytes done of total, rate, time left, per image), with a permanent line per finished
 * image; anywhere else one plain line per event, for logs and scripts. Failures go to stderr.
 */
import { count, formatBytes, formatDuration } from './format.js';
import type { WarmEvent, WarmReport, WarmResult } from './warm.js';

export interface Output {
  write(text: string): unknown;
}

export interface WarmReporter {
  onEvent(event: WarmEvent): void;
  /** The closing summary; stops any redrawing. */
  finish(report: WarmReport): void;
}


function doneLine(r: WarmResult): string {
  const platforms = r.platforms.length ? `${count(r.platforms.length, 'platform')} (${r.platforms.join(', ')}), ` : '';
  return (
    `${r.image}  done ${r.digest}  ${platforms}${count(r.manifests, 'manifest')}, ${count(r.blobs, 'blob')}, ` +
    `${formatBytes(r.bytes)} (${formatBytes(r.fetched)} fetched) in ${formatDuration(r.durationMs)}\n`
  );
}

const failedLine = (image: string, error: string) => `oci-mirror: warm ${image} failed: ${error}\n`;

function summary(report: WarmReport): string {
  const total = report.results.length + report.failures.length;
  const failed = report.failures.length ? `, ${report.failures.length} failed` : '';
  return `warmed ${report.results.length} of ${count(total, 'image')}${failed}\n`;
}

/** One line per event: `<image>  <event> …`. */
export function plainReporter(out: Output, err: Output): WarmReporter {
  return {
    onEvent(e) {
      switch (e.type) {
        case 'start':
          out.write(`${e.image}  start\n`);
          break;
        case 'manifest':
          out.write(`${e.image}  manifest ${e.digest} ${e.mediaType}${e.platform ? ` ${e.platform}` : ''} ${e.cache}\n`);
          break;
        case 'plan':
          out.write(`${e.image}  plan ${count(e.blobs, 'blob')}, ${formatBytes(e.bytes)}\n`);
          break;
        case 'blob':
          out.write(`${e.image}  blob ${e.digest} ${formatBytes(e.size)} ${e.fetched ? 'fetched' : 'cached'}\n`);
          break;
        case 'done':
          out.write(doneLine(e.result));
          break;
        case 'failed':
          err.write(failedLine(e.image, e.error));
          break;
        case 'bytes':
          break;
      }
    },
    finish(report) {
      out.write(summary(report));
    },
  };
}

interface ImageProgress {
  image: string;
  index: number;
  started: number;
  total: number;
  done: number;
  fetched: number;
}

/** A status line redrawn in place every `intervalMs`, for a terminal. */
export function ttyReporter(out: Output, err: Output, images: number, { intervalMs = 200, now = () => performance.now() } = {}): WarmReporter {
  let current: ImageProgress | undefined;
  let count = 0;
  let drawn = false;
  const clear = () => {
    if (drawn) out.write('\r\x1b[2K');
    drawn = false;
  };
  const draw = () => {
    if (!current) return;
    const p = current;
    const elapsed = (now() - p.started) / 1000;
    const rate = elapsed > 0 ? p.fetched / elapsed : 0;
    const left = Math.max(0, p.total - p.done);
    const pct = p.total > 0 ? ` ${Math.min(100, Math.floor((p.done / p.total) * 100))}%` : '';
    const eta = rate > 0 && left > 0 ? `  ${formatDuration((left / rate) * 1000)} left` : '';
    const sizes = p.total > 0 ? `${formatBytes(p.done)} / ${formatBytes(p.total)}${pct}  ${formatBytes(Math.round(rate))}/s${eta}` : 'manifests…';
    out.write(`\r\x1b[2K[${p.index}/${images}] ${p.image}  ${sizes}`);
    drawn = true;
  };
  const timer = setInterval(draw, intervalMs);
  timer.unref();
  return {
    onEvent(e) {
      switch (e.type) {
        case 'start':
          current = { image: e.image, index: ++count, started: now(), total: 0, done: 0, fetched: 0 };
          draw();
          break;
        case 'plan':
          if (current) current.total = e.bytes;
          break;
        case 'bytes':
          if (current) {
            current.done += e.bytes;
            current.fetched += e.bytes;
          }
          break;
        case 'blob':
          if (current && !e.fetched) current.done += e.size;
          break;
        case 'done':
          clear();
          out.write(doneLine(e.result));
          current = undefined;
          break;
        case 'failed':
          clear();
          err.write(failedLine(e.image, e.error));
          current = undefined;
          break;
        case 'manifest':
          break;
      }
    },
    finish(report) {
      clearInterval(timer);
      clear();
      out.write(summary(report));
    },
  };
}
