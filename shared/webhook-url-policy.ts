/**
 * Where webhooks may go. Webhook URLs are chosen by clients, so without this a client
 * could make our servers call into the private network (SSRF). The edge checks the URL's
 * literal host at submit time; the dispatcher checks every address the name resolves to
 * right before it connects, so a public name that resolves to 10.0.0.1 is refused too.
 * Both judge an address with the one function here, `addressProblem`.
 *
 * The rule: a webhook goes to an ordinary global unicast address, that is, one in no block
 * of the IANA IPv4 and IPv6 Special-Purpose Address Registries (below, as data), not
 * multicast, and for IPv6 inside 2000::/3, the only space IANA allocates for global
 * unicast. Blocks the registry marks globally reachable (anycast services such as PCP,
 * TURN, AS112, AMT; ORCHIDv2 identifiers) are refused too: none of them is a webhook
 * receiver, and an anycast address is answered by whoever is nearest, possibly inside our
 * own network.
 *
 * IPv6 blocks that carry an IPv4 address, decided one by one:
 * - judged by the IPv4 address they carry: ::ffff:0:0/96 (IPv4-mapped; the kernel connects
 *   to the IPv4 address itself, and resolvers hand these out) and 64:ff9b::/96 (the NAT64
 *   well-known prefix; DNS64 synthesizes it for every IPv4-only name on IPv6-only hosts, and
 *   the translator connects to the IPv4 address it carries).
 * - refused whatever they carry: ::/96 (IPv4-compatible, deprecated), ::ffff:0:0:0/96
 *   (IPv4-translated, RFC 2765, obsolete), 64:ff9b:1::/48 (local-use NAT64: where the IPv4
 *   address sits depends on the operator's prefix length, and the registry marks it not
 *   globally reachable), 2002::/16 (6to4) and 2001::/32 (Teredo). For 6to4 and Teredo the
 *   IPv4 addresses in them are a relay, a server and a NAT, not the host the packets end at,
 *   so judging them would judge the wrong machine; the message still names them.
 *
 * Addresses are parsed with the WHATWG URL parser (web-standard, what `new URL` has
 * already applied to a URL's host), so every textual form it accepts, such as 2130706433,
 * 0x7f.1, [::ffff:127.0.0.1] or [0:0::ffff:0:7f00:1], reaches the table as the same bytes.
 *
 * Lives in shared/ because the edge (web-standard APIs only) and the dispatcher (node)
 * must agree on one list.
 */

export interface WebhookUrlPolicy {
  /** local development: let webhooks reach loopback and private addresses */
  allowPrivate: boolean;
}

/** One row of an IANA address registry. */
export interface AddressBlock {
  prefix: string;
  name: string;
  rfc: string;
  /** the registry's "Globally Reachable" column; null where it says N/A */
  globallyReachable: boolean | null;
  /** which registry the row is from, when not the Special-Purpose one */
  registry?: 'address-space';
  /** IPv6 blocks that carry IPv4 addresses: where they are, and whether they decide */
  carries?: { ipv4: (bytes: Uint8Array) => { role: string; address: Uint8Array }[]; judge: boolean };
}

const lastIPv4 = (b: Uint8Array) => [{ role: 'IPv4', address: b.slice(12, 16) }];

/** IANA IPv4 Special-Purpose Address Registry (as of 2025), plus multicast from the IPv4 Address Space registry. */
export const IPV4_BLOCKS: readonly AddressBlock[] = [
  { prefix: '0.0.0.0/8', name: '"This network"', rfc: 'RFC 791', globallyReachable: false },
  { prefix: '0.0.0.0/32', name: '"This host on this network"', rfc: 'RFC 1122', globallyReachable: false },
  { prefix: '10.0.0.0/8', name: 'Private-Use', rfc: 'RFC 1918', globallyReachable: false },
  { prefix: '100.64.0.0/10', name: 'Shared Address Space', rfc: 'RFC 6598', globallyReachable: false },
  { prefix: '127.0.0.0/8', name: 'Loopback', rfc: 'RFC 1122', globallyReachable: false },
  { prefix: '169.254.0.0/16', name: 'Link Local', rfc: 'RFC 3927', globallyReachable: false },
  { prefix: '172.16.0.0/12', name: 'Private-Use', rfc: 'RFC 1918', globallyReachable: false },
  { prefix: '192.0.0.0/24', name: 'IETF Protocol Assignments', rfc: 'RFC 6890', globallyReachable: false },
  { prefix: '192.0.0.0/29', name: 'IPv4 Service Continuity Prefix', rfc: 'RFC 7335', globallyReachable: false },
  { prefix: '192.0.0.8/32', name: 'IPv4 dummy address', rfc: 'RFC 7600', globallyReachable: false },
  { prefix: '192.0.0.9/32', name: 'Port Control Protocol Anycast', rfc: 'RFC 7723', globallyReachable: true },
  { prefix: '192.0.0.10/32', name: 'Traversal Using Relays around NAT Anycast', rfc: 'RFC 8155', globallyReachable: true },
  { prefix: '192.0.0.170/32', name: 'NAT64/DNS64 Discovery', rfc: 'RFC 8880, RFC 7050', globallyReachable: false },
  { prefix: '192.0.0.171/32', name: 'NAT64/DNS64 Discovery', rfc: 'RFC 8880, RFC 7050', globallyReachable: false },
  { prefix: '192.0.2.0/24', name: 'Documentation (TEST-NET-1)', rfc: 'RFC 5737', globallyReachable: false },
  { prefix: '192.31.196.0/24', name: 'AS112-v4', rfc: 'RFC 7535', globallyReachable: true },
  { prefix: '192.52.193.0/24', name: 'AMT', rfc: 'RFC 7450', globallyReachable: true },
  { prefix: '192.88.99.0/24', name: 'Deprecated (6to4 Relay Anycast)', rfc: 'RFC 7526', globallyReachable: null },
  { prefix: '192.88.99.2/32', name: '6a44-relay anycast address', rfc: 'RFC 6751', globallyReachable: false },
  { prefix: '192.168.0.0/16', name: 'Private-Use', rfc: 'RFC 1918', globallyReachable: false },
  { prefix: '192.175.48.0/24', name: 'Direct Delegation AS112 Service', rfc: 'RFC 7534', globallyReachable: true },
  { prefix: '198.18.0.0/15', name: 'Benchmarking', rfc: 'RFC 2544', globallyReachable: false },
  { prefix: '198.51.100.0/24', name: 'Documentation (TEST-NET-2)', rfc: 'RFC 5737', globallyReachable: false },
  { prefix: '203.0.113.0/24', name: 'Documentation (TEST-NET-3)', rfc: 'RFC 5737', globallyReachable: false },
  { prefix: '224.0.0.0/4', name: 'Multicast', rfc: 'RFC 5771', globallyReachable: false, registry: 'address-space' },
  { prefix: '240.0.0.0/4', name: 'Reserved', rfc: 'RFC 1112', globallyReachable: false },
  { prefix: '255.255.255.255/32', name: 'Limited Broadcast', rfc: 'RFC 8190, RFC 919', globallyReachable: false },
];

/**
 * IANA IPv6 Special-Purpose Address Registry (as of 2025), plus from the IPv6 Address Space
 * registry the deprecated and scoped blocks that embed IPv4 or are often mistaken for public.
 * Names are the registry's, except the two NAT64 prefixes (the registry calls both
 * "IPv4-IPv6 Translat."), which carry their RFC's names so an error tells them apart.
 */
export const IPV6_BLOCKS: readonly AddressBlock[] = [
  { prefix: '::/128', name: 'Unspecified Address', rfc: 'RFC 4291', globallyReachable: false },
  { prefix: '::1/128', name: 'Loopback Address', rfc: 'RFC 4291', globallyReachable: false },
  { prefix: '::/96', name: 'IPv4-compatible Address', rfc: 'RFC 4291, deprecated', globallyReachable: false, registry: 'address-space', carries: { ipv4: lastIPv4, judge: false } },
  { prefix: '::ffff:0:0/96', name: 'IPv4-mapped Address', rfc: 'RFC 4291', globallyReachable: false, carries: { ipv4: lastIPv4, judge: true } },
  { prefix: '::ffff:0:0:0/96', name: 'IPv4-translated Address', rfc: 'RFC 2765, obsolete', globallyReachable: false, registry: 'address-space', carries: { ipv4: lastIPv4, judge: false } },
  { prefix: '64:ff9b::/96', name: 'NAT64 Well-Known Prefix', rfc: 'RFC 6052', globallyReachable: true, carries: { ipv4: lastIPv4, judge: true } },
  { prefix: '64:ff9b:1::/48', name: 'Local-Use IPv4/IPv6 Translation Prefix', rfc: 'RFC 8215', globallyReachable: false },
  { prefix: '100::/64', name: 'Discard-Only Address Block', rfc: 'RFC 6666', globallyReachable: false },
  { prefix: '100:0:0:1::/64', name: 'Dummy IPv6 Prefix', rfc: 'RFC 9780', globallyReachable: false },
  { prefix: '2001::/23', name: 'IETF Protocol Assignments', rfc: 'RFC 2928', globallyReachable: false },
  {
    prefix: '2001::/32',
    name: 'TEREDO',
    rfc: 'RFC 4380, RFC 8190',
    globallyReachable: null,
    carries: {
      // server IPv4 in bits 32-63; the client's (NAT's) IPv4 in bits 96-127, inverted
      ipv4: (b) => [
        { role: 'Teredo server', address: b.slice(4, 8) },
        { role: 'Teredo client', address: b.slice(12, 16).map((x) => x ^ 0xff) },
      ],
      judge: false,
    },
  },
  { prefix: '2001:1::1/128', name: 'Port Control Protocol Anycast', rfc: 'RFC 7723', globallyReachable: true },
  { prefix: '2001:1::2/128', name: 'Traversal Using Relays around NAT Anycast', rfc: 'RFC 8155', globallyReachable: true },
  { prefix: '2001:1::3/128', name: 'DNS-SD Service Registration Protocol Anycast', rfc: 'RFC 9665', globallyReachable: true },
  { prefix: '2001:2::/48', name: 'Benchmarking', rfc: 'RFC 5180', globallyReachable: false },
  { prefix: '2001:3::/32', name: 'AMT', rfc: 'RFC 7450', globallyReachable: true },
  { prefix: '2001:4:112::/48', name: 'AS112-v6', rfc: 'RFC 7535', globallyReachable: true },
  { prefix: '2001:10::/28', name: 'Deprecated (previously ORCHID)', rfc: 'RFC 4843', globallyReachable: null },
  { prefix: '2001:20::/28', name: 'ORCHIDv2', rfc: 'RFC 7343', globallyReachable: true },
  { prefix: '2001:30::/28', name: 'Drone Remote ID Protocol Entity Tags (DETs) Prefix', rfc: 'RFC 9374', globallyReachable: true },
  { prefix: '2001:db8::/32', name: 'Documentation', rfc: 'RFC 3849', globallyReachable: false },
  // the 6to4 router's IPv4 address in bits 16-47
  { prefix: '2002::/16', name: '6to4', rfc: 'RFC 3056', globallyReachable: null, carries: { ipv4: (b) => [{ role: '6to4 router', address: b.slice(2, 6) }], judge: false } },
  { prefix: '2620:4f:8000::/48', name: 'Direct Delegation AS112 Service', rfc: 'RFC 7534', globallyReachable: true },
  { prefix: '3fff::/20', name: 'Documentation', rfc: 'RFC 9637', globallyReachable: false },
  { prefix: '5f00::/16', name: 'Segment Routing (SRv6) SIDs', rfc: 'RFC 9602', globallyReachable: false },
  { prefix: 'fc00::/7', name: 'Unique-Local', rfc: 'RFC 4193, RFC 8190', globallyReachable: false },
  { prefix: 'fe80::/10', name: 'Link-Local Unicast', rfc: 'RFC 4291', globallyReachable: false },
  { prefix: 'fec0::/10', name: 'Site-Local', rfc: 'RFC 3879, deprecated', globallyReachable: false, registry: 'address-space' },
  { prefix: 'ff00::/8', name: 'Multicast', rfc: 'RFC 4291', globallyReachable: false, registry: 'address-space' },
];

/** Host names that always mean "this machine or this network". */
const LOCAL_NAMES = [/^localhost$/i, /\.localhost$/i, /^localhost\.localdomain$/i, /^ip6-localhost$/i, /^ip6-loopback$/i, /\.local$/i, /\.internal$/i, /\.home\.arpa$/i];

/** Why this URL may not receive webhooks, or null when it may (literal checks only). */
export function webhookUrlProblem(raw: string, policy: WebhookUrlPolicy): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http(s) URL';
  if (url.username !== '' || url.password !== '') return 'must not contain credentials; authenticate the webhook with its signature';
  if (policy.allowPrivate) return null;
  const host = url.hostname;
  if (host === '') return 'must name a host';
  if (LOCAL_NAMES.some((re) => re.test(host.replace(/\.$/, '')))) {
    return `host "${host}" is local; webhooks go to public addresses only`;
  }
  // the URL parser has turned every IPv4 form into a dotted quad and bracketed every IPv6 one
  const literal = host.startsWith('[') ? host.slice(1, -1) : DOTTED_QUAD.test(host) ? host : null;
  if (literal !== null) {
    const why = addressProblem(literal);
    if (why) return `${why}; webhooks go to public unicast addresses only`;
  }
  return null;
}

/** True only for ordinary global unicast addresses. Unparseable input is not public. */
export function isPublicAddress(ip: string): boolean {
  return addressProblem(ip) === null;
}

/**
 * Why a webhook may not go to this address (a literal from a URL or an address a resolver
 * returned), or null when it may. The one verdict both checks use.
 */
export function addressProblem(ip: string): string | null {
  const bytes = parseAddress(ip);
  if (!bytes) return `${JSON.stringify(ip)} is not an IP address`;
  return bytes.length === 4 ? ipv4Problem(bytes) : ipv6Problem(bytes);
}

/** The registry block an address falls in (the most specific one), or null. */
export function addressBlock(ip: string): AddressBlock | null {
  const bytes = parseAddress(ip);
  if (!bytes) return null;
  return mostSpecific(bytes.length === 4 ? V4 : V6, bytes)?.block ?? null;
}

function ipv4Problem(bytes: Uint8Array): string | null {
  const hit = mostSpecific(V4, bytes);
  return hit ? `address ${formatIPv4(bytes)} is ${describe(hit.block)}` : null;
}

function ipv6Problem(bytes: Uint8Array): string | null {
  const shown = formatIPv6(bytes);
  const hit = mostSpecific(V6, bytes);
  if (hit?.block.carries) {
    const carried = hit.block.carries.ipv4(bytes);
    if (hit.block.carries.judge) {
      const inner = ipv4Problem(carried[0]!.address);
      return inner === null ? null : `address ${shown} is ${describe(hit.block, false)}, carrying IPv4 ${inner.replace(/^address (\S+) is /, '$1, which is ')}`;
    }
    const list = carried.map((c) => `${c.role} ${formatIPv4(c.address)}`).join(', ');
    return `address ${shown} is ${describe(hit.block)}, carrying ${list}, and is refused whatever it carries`;
  }
  if (hit) return `address ${shown} is ${describe(hit.block)}`;
  if (!GLOBAL_UNICAST.contains(bytes)) return `address ${shown} is outside 2000::/3, the only IPv6 space allocated for global unicast`;
  return null;
}

function describe(b: AddressBlock, withReach = true): string {
  const reach = withReach && b.globallyReachable === false ? ', not globally reachable' : '';
  return `in ${b.prefix}, ${b.name} (${b.rfc}${reach})`;
}

// ---- parsing and matching ---------------------------------------------------------------

const DOTTED_QUAD = /^(?:0|[1-9]\d{0,2})(?:\.(?:0|[1-9]\d{0,2})){3}$/;

/**
 * 4 or 16 bytes, or null. IPv4: a dotted quad without leading zeros, which is what the URL
 * parser and resolvers print (anything else is not taken for an address). IPv6: any form the
 * WHATWG URL parser accepts inside brackets, plus a zone id (fe80::1%eth0) as resolvers print
 * link-local addresses.
 */
export function parseAddress(text: string): Uint8Array | null {
  if (DOTTED_QUAD.test(text)) {
    const parts = text.split('.').map(Number);
    return parts.every((p) => p <= 255) ? Uint8Array.from(parts) : null;
  }
  let s = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = s.indexOf('%');
  if (zone > 0) s = s.slice(0, zone);
  if (!s.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(s)) return null;
  let canonical: string;
  try {
    canonical = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  // canonical form: lowercase hex words, at most one '::', no dotted tail
  const [head, tail] = canonical.split('::') as [string, string | undefined];
  const words = (part: string | undefined) => (part ? part.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const bytes = new Uint8Array(16);
  all.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

class Prefix {
  readonly bytes: Uint8Array;
  readonly bits: number;
  constructor(text: string) {
    const [addr, len] = text.split('/') as [string, string];
    const bytes = parseAddress(addr);
    const bits = Number(len);
    if (!bytes || !Number.isInteger(bits) || bits < 0 || bits > bytes.length * 8) throw new Error(`bad prefix ${text}`);
    this.bytes = bytes;
    this.bits = bits;
  }
  contains(a: Uint8Array): boolean {
    if (a.length !== this.bytes.length) return false;
    const whole = this.bits >> 3;
    for (let i = 0; i < whole; i++) if (a[i] !== this.bytes[i]) return false;
    const rest = this.bits & 7;
    if (rest === 0) return true;
    const mask = (0xff << (8 - rest)) & 0xff;
    return (a[whole]! & mask) === (this.bytes[whole]! & mask);
  }
}

const compile = (blocks: readonly AddressBlock[]) => blocks.map((block) => ({ block, prefix: new Prefix(block.prefix) }));
const V4 = compile(IPV4_BLOCKS);
const V6 = compile(IPV6_BLOCKS);
const GLOBAL_UNICAST = new Prefix('2000::/3');

function mostSpecific(table: { block: AddressBlock; prefix: Prefix }[], a: Uint8Array) {
  let best: { block: AddressBlock; prefix: Prefix } | null = null;
  for (const row of table) if (row.prefix.contains(a) && (!best || row.prefix.bits > best.prefix.bits)) best = row;
  return best;
}

const formatIPv4 = (b: Uint8Array) => Array.from(b).join('.');
const formatIPv6 = (b: Uint8Array) => {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return new URL(`http://[${words.join(':')}]/`).hostname.slice(1, -1);
};
