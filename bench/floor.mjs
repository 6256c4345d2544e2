/**
 * The floor under the mirror's memory rows: the least a Node program doing part of the mirror's
 * job costs, started with the same node flags, so that the bench prints what the platform itself
 * takes beside what the mirror takes. Plain JavaScript, run by node without tsx: a loader in the
 * process would be counted in its memory.
 *
 *   node bench/floor.mjs stack           the design card's stack serving HTTP and nothing of the
 *                                        mirror: koa with @koa/router answering /healthz, undici's
 *                                        dispatchers as the mirror loads them (dist/), and keyv
 *   node bench/floor.mjs tee URL N       the least tee: once N clients have asked, one undici GET
 *                                        of URL, each chunk written to all N, and the next read
 *                                        only when every client has taken it: no digest, no spool,
 *                                        no framework, no second reader
 *
 * Both listen on 127.0.0.1:$PORT and answer /healthz; a tee serves one round of N clients.
 */
import http from 'node:http';
import process from 'node:process';
import { URL } from 'node:url';

const [mode, url, clients] = process.argv.slice(2);
const port = Number(process.env.PORT);

if (mode === 'stack') {
  const [{ default: Koa }, { default: Router }, { Keyv }] = await Promise.all([import('koa'), import('@koa/router'), import('keyv'), import('../dist/src/upstream/undici.js')]);
  const app = new Koa();
  const router = new Router();
  const keyv = new Keyv();
  router.get('/healthz', async (ctx) => {
    ctx.body = { ok: (await keyv.get('healthz')) === undefined };
  });
  app.use(router.routes());
  app.listen(port, '127.0.0.1');
} else if (mode === 'tee') {
  const { Pool } = await import('../dist/src/upstream/undici.js');
  const upstream = new URL(url);
  const pool = new Pool(upstream.origin);
  const waiting = [];
  http
    .createServer((req, res) => {
      if (req.url === '/healthz') return void res.end();
      waiting.push(res);
      if (waiting.length === Number(clients)) void tee(waiting.splice(0));
    })
    .listen(port, '127.0.0.1');

  async function tee(responses) {
    try {
      const { statusCode, headers, body } = await pool.request({ method: 'GET', path: upstream.pathname });
      for (const res of responses) res.writeHead(statusCode, { 'content-length': headers['content-length'] });
      for await (const chunk of body) {
        const behind = responses.filter((res) => !res.write(chunk));
        // A client that went away drains nothing: its close lets the others go on.
        if (behind.length) await Promise.all(behind.map((res) => new Promise((go) => res.once('drain', go).once('close', go))));
      }
      for (const res of responses) res.end();
    } catch (error) {
      for (const res of responses) res.destroy(error);
    }
  }
} else {
  throw new Error(`usage: node bench/floor.mjs stack | tee URL N (not ${mode})`);
}
