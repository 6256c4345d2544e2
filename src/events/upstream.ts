/**
 * An upstream that reports every request it sends as an `upstream` event. A decorator, so the
 * client and its failover stay unaware of observers; the duration runs to the response
 * headers, the part the upstream is responsible for (a body's pace is the network's).
 */
import { isOciError } from '../errors.js';
import { heldOff } from '../upstream/rate-limit.js';
import { shortReason } from '../upstream/reason.js';
import type { Upstream } from '../upstream/types.js';
import type { MirrorEvents } from './emitter.js';

export function observeUpstream(upstream: Upstream, events: MirrorEvents): Upstream {
  return {
    get name() {
      return upstream.name;
    },
    get url() {
      return upstream.url;
    },
    async request(req) {
      const started = performance.now();
      // Spelled out, not `{ ...base, status }`: see eslint.config.js.
      const { name } = upstream;
      try {
        const res = await upstream.request(req);
        events.emit('upstream', { upstream: name, method: req.method, repository: req.repository, status: res.status, durationMs: performance.now() - started });
        return res;
      } catch (err) {
        // Held off by a back-off: nothing was sent, so there is no upstream request to count.
        if (!heldOff(err)) {
          const error = errorReason(err, req.signal);
          events.emit('upstream', { upstream: name, method: req.method, repository: req.repository, error, durationMs: performance.now() - started });
        }
        throw err;
      }
    },
    ...(upstream.rateLimit && { rateLimit: upstream.rateLimit.bind(upstream) }),
    close: () => upstream.close(),
  };
}

/** A short, bounded label: never a message, which could carry a URL with a presigned query. */
function errorReason(err: unknown, signal: AbortSignal | undefined): string {
  if (signal?.aborted) return 'aborted';
  const cause = isOciError(err) ? (err as Error).cause ?? err : err;
  return shortReason(cause);
}
