/**
 * The parts of undici the mirror sends with, loaded from their own files. undici's index loads
 * every other part too (fetch, WebSocket, EventSource, the cache stores, the mocks): about
 * 8 MB of idle memory the mirror never uses. The index also gives every dispatcher its
 * `request`/`stream`/… methods, by copying lib/api onto Dispatcher.prototype; that is done here
 * the same way (twice is harmless: the same functions). undici has no `exports` map, so these
 * paths are reachable; undici.test.ts checks that they are the classes the index exports.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);

Object.assign((require('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher).prototype, require('undici/lib/api/index.js'));

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
export const Pool = require('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export const ProxyAgent = require('undici/lib/dispatcher/proxy-agent.js') as typeof Undici.ProxyAgent;
export const EnvHttpProxyAgent = require('undici/lib/dispatcher/env-http-proxy-agent.js') as typeof Undici.EnvHttpProxyAgent;
export const buildConnector = require('undici/lib/core/connect.js') as typeof Undici.buildConnector;
