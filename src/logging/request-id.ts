/**
 * Request ids: a client's or a proxy's `X-Request-Id` is kept when it is sane, so one id
 * follows a pull through every hop; anything else is replaced, since the id lands in every
 * log line and in the response (no control characters, no log injection, bounded length).
 */
import { randomUUID } from 'node:crypto';

const SANE = /^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$/;

export function requestIdFrom(incoming: string | undefined): string {
  return incoming !== undefined && SANE.test(incoming) ? incoming : randomUUID();
}
