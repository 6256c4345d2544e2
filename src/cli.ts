#!/usr/bin/env node
/**
 * The `oci-mirror` command (src/cli-main.ts). Its modules are loaded only once V8's heap settings
 * for a server process are in place (src/heap-policy.ts): loading them is what grows the heap.
 */
import './heap-policy.js';

await import('./cli-main.js');
