/**
 * Which address a request came from, for the per-address limits (edge/app.ts), given the
 * direct peer and its X-Forwarded-For header.
 *
 * Only a trusted proxy's word counts. X-Forwarded-For is a list each proxy appends its peer
 * to, so everything left of the entry the nearest trusted proxy added may have been written
 * by the client itself. The client is therefore the rightmost entry that is not a trusted
 * proxy, walking from the peer leftwards through trusted proxies only (what nginx's
 * real_ip_recursive and Express's `trust proxy` do). A peer that is not trusted is the client,
 * whatever the header says.
 *
 * Web-standard and pure: the root supplies how an address literal is read and which ones are
 * trusted (edge/local.ts, with node:net).
 */

export interface ProxyTrust {
  /** the canonical form of an address literal (ports and brackets stripped), or null */
  parse(literal: string): string | null;
  /** whether a canonical address belongs to a trusted proxy */
  trusted(address: string): boolean;
}

/** Entries looked at, at most: a chain of proxies is a handful, and the header is the client's to inflate. */
const MAX_HOPS = 32;

export function clientAddress(peer: string, forwardedFor: string | undefined, trust: ProxyTrust): string {
  if (forwardedFor === undefined || !trust.trusted(peer)) return peer;
  const hops = forwardedFor.split(',');
  let nearest = peer;
  for (let i = hops.length - 1; i >= 0 && i >= hops.length - MAX_HOPS; i--) {
    const hop = trust.parse(hops[i]!.trim());
    // a malformed entry was not written by a trusted proxy: stop at the last one that was
    if (hop === null) return nearest;
    if (!trust.trusted(hop)) return hop;
    nearest = hop;
  }
  return nearest;
}

/**
 * The bucket an address is limited in: an IPv4 address alone, an IPv6 address by its /64,
 * which one subscriber usually holds whole (rotating through it must not buy fresh tokens).
 */
export function addressBucket(address: string): string {
  if (!address.includes(':')) return address;
  const [head, tail] = address.split('::', 2) as [string, string | undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  if (tail === undefined) return `${left.slice(0, 4).join(':')}::/64`;
  const right = groups(tail);
  // an embedded IPv4 address at the end fills two groups
  const rightGroups = right.length + (right.at(-1)?.includes('.') ? 1 : 0);
  const all = [...left, ...Array<string>(Math.max(0, 8 - left.length - rightGroups)).fill('0'), ...right];
  return `${all
    .slice(0, 4)
    .map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? Number.parseInt(g, 16).toString(16) : g))
    .join(':')}::/64`;
}
