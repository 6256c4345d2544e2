/** The config keys for how an upstream is reached on the network: its egress proxy and its TLS trust. */
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

/**
 * How the mirror checks an upstream's TLS certificate and proves its own, on the upstream's
 * own host (its URLs) only: a token realm or redirect target elsewhere is another host, with
 * the system's trust and no client certificate.
 */
export const upstreamTls = z
  .object({
    /** PEM CA certificates the upstream's certificate is checked against, instead of the system's. */
    caFile: z.string().min(1).optional(),
    /** A client certificate (PEM, with its chain) for upstreams that ask for one; keyFile goes with it. */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    /** The name sent as SNI and checked against the certificate, when the URL's host is not it. */
    servername: z.string().min(1).optional(),
    /** Accept any certificate: for a lab only, and warned about at start. */
    insecureSkipVerify: z.boolean().default(false),
  })
  .strict()
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), {
    message: 'certFile and keyFile go together',
    path: ['certFile'],
  });
