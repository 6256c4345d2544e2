/**
 * `listen`: `:port` means every interface, IPv6 and IPv4 alike, while an explicit address
 * keeps meaning only itself.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { raw } from '../helpers/http.js';
import { opsFixture } from './fixture.js';

const ops = opsFixture();

/** Whether this machine has an IPv6 loopback to test on (some containers have none). */
async function hasIpv6Loopback(): Promise<boolean> {
  const probe = createServer();
  try {
    probe.listen(0, '::1');
    await once(probe, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    probe.close();
  }
}

describe('listen', () => {
  it('":0" answers on 127.0.0.1 and on [::1]', async (ctx) => {
    const m = await ops.mirror({ listen: ':0' });
    expect((await raw(`http://127.0.0.1:${m.port}/healthz`)).status).toBe(200);
    if (!(await hasIpv6Loopback())) ctx.skip('this host has no ::1: the IPv6 half is not tested');
    expect((await raw(`http://[::1]:${m.port}/healthz`)).status).toBe(200);
  });

  it('"127.0.0.1:0" answers on 127.0.0.1 only', async (ctx) => {
    const m = await ops.mirror({ listen: '127.0.0.1:0' });
    expect((await raw(`http://127.0.0.1:${m.port}/healthz`)).status).toBe(200);
    if (!(await hasIpv6Loopback())) ctx.skip('this host has no ::1: the IPv6 half is not tested');
    await expect(raw(`http://[::1]:${m.port}/healthz`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('"[::1]:0" answers on [::1] only', async (ctx) => {
    if (!(await hasIpv6Loopback())) ctx.skip('this host has no ::1');
    const m = await ops.mirror({ listen: '[::1]:0' });
    expect(m.host).toBe(`[::1]:${m.port}`);
    expect((await raw(`http://[::1]:${m.port}/healthz`)).status).toBe(200);
    await expect(raw(`http://127.0.0.1:${m.port}/healthz`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
