/**
 * What is being served right now, per digest, from the mirror's events: a `cache` event pins
 * the object until the `served` event of the same response. Eviction and purge never remove
 * a pinned object.
 */
import type { MirrorEvents } from '../events/index.js';

export interface Pins {
  isServed(digest: string): boolean;
  /** The digests being served now. */
  served(): IterableIterator<string>;
  /** Stops following the events. */
  stop(): void;
}

export function trackPins(events: MirrorEvents): Pins {
  const pins = new Map<string, number>();
  const unsubscribe = [
    events.on('cache', (e) => {
      pins.set(e.digest, (pins.get(e.digest) ?? 0) + 1);
    }),
    events.on('served', (e) => {
      const left = (pins.get(e.digest) ?? 1) - 1;
      if (left > 0) pins.set(e.digest, left);
      else pins.delete(e.digest);
    }),
  ];
  return {
    isServed: (digest) => (pins.get(digest) ?? 0) > 0,
    served: () => pins.keys(),
    stop() {
      for (const off of unsubscribe) off();
    },
  };
}
