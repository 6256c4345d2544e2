import { describe, expect, it } from 'vitest';
import * as narrow from './undici.js';

describe('the parts of undici loaded from their own files', () => {
  it("are the very classes undici's index exports", async () => {
    const undici = await import('undici');
    expect(narrow.Agent).toBe(undici.Agent);
    expect(narrow.Pool).toBe(undici.Pool);
    expect(narrow.ProxyAgent).toBe(undici.ProxyAgent);
    expect(narrow.EnvHttpProxyAgent).toBe(undici.EnvHttpProxyAgent);
    expect(narrow.buildConnector).toBe(undici.buildConnector);
  });

  it('can send without undici\'s index ever loading', async () => {
    // A fresh node process: in this one, vitest or another test may have loaded the index.
    const { execFileSync } = await import('node:child_process');
    const probe = `
      import { createServer } from 'node:http';
      import { createRequire } from 'node:module';
      const { Pool } = await import(${JSON.stringify(new URL('./undici.ts', import.meta.url).href)});
      const server = createServer((req, res) => res.end('pong')).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const pool = new Pool('http://127.0.0.1:' + server.address().port);
      const res = await pool.request({ path: '/', method: 'GET' });
      const text = await res.body.text();
      await pool.close();
      server.close();
      const index = createRequire(import.meta.url).resolve('undici');
      console.log(JSON.stringify({ text, indexLoaded: index in createRequire(import.meta.url).cache }));
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { encoding: 'utf8', timeout: 30_000 });
    expect(JSON.parse(out)).toEqual({ text: 'pong', indexLoaded: false });
  });
});
