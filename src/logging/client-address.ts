/**
 * Who sent a request, for the access log: the socket's peer, or, when that peer is a proxy the
 * config trusts, the address it reports in `X-Forwarded-For`. Only trusted hops are skipped:
 * anything to the left of the first untrusted address could have been written by the client.
 */
import { BlockList, isIP } from 'node:net';

export type ClientAddress = (peer: string | undefined, forwardedFor: string | undefined) => string | undefined;

/** `trusted`: addresses and CIDR ranges (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`). */
export function clientAddress(trusted: readonly string[]): ClientAddress {
  const list = new BlockList();
  for (const entry of trusted) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  const isTrusted = (address: string) => {
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
  return (peer, forwardedFor) => {
    const from = unmapped(peer);
    if (from === undefined || trusted.length === 0 || !forwardedFor || !isTrusted(from)) return from;
    const hops = forwardedFor.split(',').map((h) => unmapped(h.trim()));
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i];
      if (!hop || isIP(hop) === 0) return from; // a hop we cannot read: stop at what we know
      if (!isTrusted(hop)) return hop;
    }
    return hops[0] ?? from;
  };
}

/** IPv4 clients of a dual-stack socket appear as `::ffff:a.b.c.d`. */
function unmapped(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
