/**
 * Turns the fills registry's `onFill` hook into `fill:start` and `fill:end` events.
 */
import type { Fill } from '../fill/index.js';
import type { MirrorEvents } from './emitter.js';

export function observeFills(events: MirrorEvents): (fill: Fill) => void {
  return function observeFill(fill) {
    const started = performance.now();
    const digest = fill.digest.value;
    events.emit('fill:start', { digest });
    const end = (error?: Error) => {
      const durationMs = performance.now() - started;
      // A fill that found the blob already stored fetched nothing.
      const bytes = fill.alreadyStored ? 0 : fill.written;
      const source = fill.relayed ? 'replica' : 'upstream';
      const reason = fill.refused;
      const refused = reason && error ? { refused: { reason, message: error.message } } : {};
      if (error) events.emit('fill:end', { digest, outcome: 'failed', bytes, source, durationMs, error: errorCode(error), ...refused });
      else events.emit('fill:end', { digest, outcome: fill.alreadyStored ? 'existing' : 'committed', bytes, source, durationMs });
    };
    fill.done.then(
      () => end(),
      (err: unknown) => end(err instanceof Error ? err : new Error(String(err))),
    );
  };
}

function errorCode(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err.name;
}
