/**
 * Where webhooks may go. Webhook URLs are chosen by clients, so without this a client
 * could make our servers call into the private network (SSRF). The edge checks the URL's
 * literal host at submit time; the dispatcher checks every address the name resolves to
 * right before it connects, so a public name that resolves to 10.0.0.1 is refused too.
 *
 * Lives in shared/ because the edge (web-standard APIs only) and the dispatcher (node)
 * must agree on one list.
 */

export interface WebhookUrlPolicy {
  /** local development: let webhooks reach loopback and private addresses */
  allowPrivate: boolean;
}

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
  const ip = host.startsWith('[') ? host.slice(1, -1) : host;
  if (isIpLiteral(ip) && !isPublicAddress(ip)) {
    return `address ${ip} is loopback, private, link-local or reserved; webhooks go to public addresses only`;
  }
  return null;
}

export function isIpLiteral(s: string): boolean {
  return parseIPv4(s) !== null || parseIPv6(s) !== null;
}

/** True only for globally routable unicast addresses. Unparseable input is not public. */
export function isPublicAddress(ip: string): boolean {
  const v4 = parseIPv4(ip);
  if (v4) return isPublicV4(v4);
  const v6 = parseIPv6(ip);
  if (!v6) return false;
  return isPublicV6(v6);
}

function isPublicV4([a, b, c]: number[]): boolean {
  if (a === 0) return false; // "this network"
  if (a === 10) return false; // private
  if (a === 100 && b! >= 64 && b! <= 127) return false; // carrier-grade NAT
  if (a === 127) return false; // loopback
  if (a === 169 && b === 254) return false; // link-local, cloud metadata
  if (a === 172 && b! >= 16 && b! <= 31) return false; // private
  if (a === 192 && b === 0 && (c === 0 || c === 2)) return false; // IETF protocol assignments, TEST-NET-1
  if (a === 192 && b === 88 && c === 99) return false; // 6to4 relay anycast
  if (a === 192 && b === 168) return false; // private
  if (a === 198 && (b === 18 || b === 19)) return false; // benchmarking
  if (a === 198 && b === 51 && c === 100) return false; // TEST-NET-2
  if (a === 203 && b === 0 && c === 113) return false; // TEST-NET-3
  if (a! >= 224) return false; // multicast, reserved, broadcast
  return true;
}

function isPublicV6(w: number[]): boolean {
  const [a, b, c, d, e, f, g, h] = w as [number, number, number, number, number, number, number, number];
  if (w.every((x) => x === 0)) return false; // ::
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0 && g === 0 && h === 1) return false; // ::1
  // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d: judge the IPv4 address
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && (f === 0xffff || f === 0)) {
    return isPublicV4([g >> 8, g & 255, h >> 8, h & 255]);
  }
  if (a === 0x64 && b === 0xff9b) return isPublicV4([g >> 8, g & 255, h >> 8, h & 255]); // NAT64
  if ((a & 0xfe00) === 0xfc00) return false; // unique local fc00::/7
  if ((a & 0xffc0) === 0xfe80) return false; // link-local fe80::/10
  if ((a & 0xffc0) === 0xfec0) return false; // site-local (deprecated) fec0::/10
  if ((a & 0xff00) === 0xff00) return false; // multicast
  if (a === 0x2001 && b === 0x0db8) return false; // documentation
  if (a === 0x2002) return isPublicV4([b >> 8, b & 255, c >> 8, c & 255]); // 6to4 embeds an IPv4 address
  if (a === 0x0100 && b === 0 && c === 0 && d === 0) return false; // discard-only
  return true;
}

/** Dotted-quad only: URL parsing has already normalized 0x7f.1 and 2130706433 to it. */
export function parseIPv4(s: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : null;
}

/** Eight 16-bit words, or null. Accepts '::' compression, an embedded IPv4 tail and a zone id. */
export function parseIPv6(input: string): number[] | null {
  let s = input;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(':')) return null;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (!v4) return null;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    s = s.slice(0, lastColon + 1) + '0'; // placeholder word, dropped below
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const words = (part: string) => (part === '' ? [] : part.split(':'));
  const head = words(halves[0]!);
  const rest = halves.length === 2 ? words(halves[1]!) : [];
  if (tail.length) (rest.length ? rest : head).pop();
  const parse = (x: string) => (/^[0-9a-fA-F]{1,4}$/.test(x) ? parseInt(x, 16) : NaN);
  const h = head.map(parse);
  const r = rest.map(parse);
  const given = h.length + r.length + tail.length;
  if (h.some(Number.isNaN) || r.some(Number.isNaN)) return null;
  if (halves.length === 1) return given === 8 ? [...h, ...tail] : null;
  if (given > 7) return null;
  return [...h, ...new Array<number>(8 - given).fill(0), ...r, ...tail];
}
