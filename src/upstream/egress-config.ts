/** The config keys for how an upstream is reached on the network: its egress proxy. */
import { z } from 'zod';

/**
 * An upstream's own forward proxy, `none` for a direct connection whatever the environment
 * says, or absent: then `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` decide.
 */
export const upstreamProxy = z.string().refine(
  (v) => {
    if (v === 'none') return true;
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname.replace(/\/+$/, '') === '' && !u.search && !u.hash;
    } catch {
      return false;
    }
  },
  { message: 'must be "none" or a proxy origin such as http://proxy.internal:3128' },
);
