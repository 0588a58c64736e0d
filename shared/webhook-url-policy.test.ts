import { describe, expect, it } from 'vitest';
import { IPV4_BLOCKS, IPV6_BLOCKS, addressBlock, addressProblem, isPublicAddress, parseAddress, webhookUrlProblem } from './webhook-url-policy.ts';

const strict = { allowPrivate: false };

/** What the policy makes of an address: 'public', the prefix of the block refusing it, or 'outside 2000::/3'. */
function verdict(ip: string): string {
  if (addressProblem(ip) === null) return 'public';
  return addressBlock(ip)?.prefix ?? (/outside 2000::\/3/.test(addressProblem(ip)!) ? 'outside 2000::/3' : `unparsed: ${addressProblem(ip)}`);
}

const F = 'ffff';
/**
 * Every registry block at its first and last address and one address outside each end,
 * written out by hand (not derived from the table): [block, first, last, before, after],
 * each address with the verdict it must get. null: no address there (the space ends).
 */
type Probe = [string, string] | null;
const BOUNDARIES: [string, Probe, Probe, Probe, Probe][] = [
  // IPv4
  ['0.0.0.0/8', ['0.0.0.0', '0.0.0.0/32'], ['0.255.255.255', '0.0.0.0/8'], null, ['1.0.0.0', 'public']],
  ['0.0.0.0/32', ['0.0.0.0', '0.0.0.0/32'], ['0.0.0.0', '0.0.0.0/32'], null, ['0.0.0.1', '0.0.0.0/8']],
  ['10.0.0.0/8', ['10.0.0.0', '10.0.0.0/8'], ['10.255.255.255', '10.0.0.0/8'], ['9.255.255.255', 'public'], ['11.0.0.0', 'public']],
  ['100.64.0.0/10', ['100.64.0.0', '100.64.0.0/10'], ['100.127.255.255', '100.64.0.0/10'], ['100.63.255.255', 'public'], ['100.128.0.0', 'public']],
  ['127.0.0.0/8', ['127.0.0.0', '127.0.0.0/8'], ['127.255.255.255', '127.0.0.0/8'], ['126.255.255.255', 'public'], ['128.0.0.0', 'public']],
  ['169.254.0.0/16', ['169.254.0.0', '169.254.0.0/16'], ['169.254.255.255', '169.254.0.0/16'], ['169.253.255.255', 'public'], ['169.255.0.0', 'public']],
  ['172.16.0.0/12', ['172.16.0.0', '172.16.0.0/12'], ['172.31.255.255', '172.16.0.0/12'], ['172.15.255.255', 'public'], ['172.32.0.0', 'public']],
  ['192.0.0.0/24', ['192.0.0.0', '192.0.0.0/29'], ['192.0.0.255', '192.0.0.0/24'], ['191.255.255.255', 'public'], ['192.0.1.0', 'public']],
  ['192.0.0.0/29', ['192.0.0.0', '192.0.0.0/29'], ['192.0.0.7', '192.0.0.0/29'], ['191.255.255.255', 'public'], ['192.0.0.8', '192.0.0.8/32']],
  ['192.0.0.8/32', ['192.0.0.8', '192.0.0.8/32'], ['192.0.0.8', '192.0.0.8/32'], ['192.0.0.7', '192.0.0.0/29'], ['192.0.0.9', '192.0.0.9/32']],
  ['192.0.0.9/32', ['192.0.0.9', '192.0.0.9/32'], ['192.0.0.9', '192.0.0.9/32'], ['192.0.0.8', '192.0.0.8/32'], ['192.0.0.10', '192.0.0.10/32']],
  ['192.0.0.10/32', ['192.0.0.10', '192.0.0.10/32'], ['192.0.0.10', '192.0.0.10/32'], ['192.0.0.9', '192.0.0.9/32'], ['192.0.0.11', '192.0.0.0/24']],
  ['192.0.0.170/32', ['192.0.0.170', '192.0.0.170/32'], ['192.0.0.170', '192.0.0.170/32'], ['192.0.0.169', '192.0.0.0/24'], ['192.0.0.171', '192.0.0.171/32']],
  ['192.0.0.171/32', ['192.0.0.171', '192.0.0.171/32'], ['192.0.0.171', '192.0.0.171/32'], ['192.0.0.170', '192.0.0.170/32'], ['192.0.0.172', '192.0.0.0/24']],
  ['192.0.2.0/24', ['192.0.2.0', '192.0.2.0/24'], ['192.0.2.255', '192.0.2.0/24'], ['192.0.1.255', 'public'], ['192.0.3.0', 'public']],
  ['192.31.196.0/24', ['192.31.196.0', '192.31.196.0/24'], ['192.31.196.255', '192.31.196.0/24'], ['192.31.195.255', 'public'], ['192.31.197.0', 'public']],
  ['192.52.193.0/24', ['192.52.193.0', '192.52.193.0/24'], ['192.52.193.255', '192.52.193.0/24'], ['192.52.192.255', 'public'], ['192.52.194.0', 'public']],
  ['192.88.99.0/24', ['192.88.99.0', '192.88.99.0/24'], ['192.88.99.255', '192.88.99.0/24'], ['192.88.98.255', 'public'], ['192.88.100.0', 'public']],
  ['192.88.99.2/32', ['192.88.99.2', '192.88.99.2/32'], ['192.88.99.2', '192.88.99.2/32'], ['192.88.99.1', '192.88.99.0/24'], ['192.88.99.3', '192.88.99.0/24']],
  ['192.168.0.0/16', ['192.168.0.0', '192.168.0.0/16'], ['192.168.255.255', '192.168.0.0/16'], ['192.167.255.255', 'public'], ['192.169.0.0', 'public']],
  ['192.175.48.0/24', ['192.175.48.0', '192.175.48.0/24'], ['192.175.48.255', '192.175.48.0/24'], ['192.175.47.255', 'public'], ['192.175.49.0', 'public']],
  ['198.18.0.0/15', ['198.18.0.0', '198.18.0.0/15'], ['198.19.255.255', '198.18.0.0/15'], ['198.17.255.255', 'public'], ['198.20.0.0', 'public']],
  ['198.51.100.0/24', ['198.51.100.0', '198.51.100.0/24'], ['198.51.100.255', '198.51.100.0/24'], ['198.51.99.255', 'public'], ['198.51.101.0', 'public']],
  ['203.0.113.0/24', ['203.0.113.0', '203.0.113.0/24'], ['203.0.113.255', '203.0.113.0/24'], ['203.0.112.255', 'public'], ['203.0.114.0', 'public']],
  ['224.0.0.0/4', ['224.0.0.0', '224.0.0.0/4'], ['239.255.255.255', '224.0.0.0/4'], ['223.255.255.255', 'public'], ['240.0.0.0', '240.0.0.0/4']],
  ['240.0.0.0/4', ['240.0.0.0', '240.0.0.0/4'], ['255.255.255.255', '255.255.255.255/32'], ['239.255.255.255', '224.0.0.0/4'], null],
  ['255.255.255.255/32', ['255.255.255.255', '255.255.255.255/32'], ['255.255.255.255', '255.255.255.255/32'], ['255.255.255.254', '240.0.0.0/4'], null],
  // IPv6
  ['::/128', ['::', '::/128'], ['::', '::/128'], null, ['::1', '::1/128']],
  ['::1/128', ['::1', '::1/128'], ['::1', '::1/128'], ['::', '::/128'], ['::2', '::/96']],
  ['::/96', ['::', '::/128'], ['::ffff:ffff', '::/96'], null, ['::1:0:0', 'outside 2000::/3']],
  ['::ffff:0:0/96', ['::ffff:0.0.0.0', '::ffff:0:0/96'], ['::ffff:255.255.255.255', '::ffff:0:0/96'], ['::fffe:ffff:ffff', 'outside 2000::/3'], ['::1:0:0:0', 'outside 2000::/3']],
  ['::ffff:0:0:0/96', ['::ffff:0:0:0', '::ffff:0:0:0/96'], ['::ffff:0:ffff:ffff', '::ffff:0:0:0/96'], [`::fffe:${F}:${F}:${F}`, 'outside 2000::/3'], ['::ffff:1:0:0', 'outside 2000::/3']],
  ['64:ff9b::/96', ['64:ff9b::', '64:ff9b::/96'], ['64:ff9b::ffff:ffff', '64:ff9b::/96'], [`64:ff9a:${F}:${F}:${F}:${F}:${F}:${F}`, 'outside 2000::/3'], ['64:ff9b::1:0:0', 'outside 2000::/3']],
  ['64:ff9b:1::/48', ['64:ff9b:1::', '64:ff9b:1::/48'], [`64:ff9b:1:${F}:${F}:${F}:${F}:${F}`, '64:ff9b:1::/48'], [`64:ff9b:0:${F}:${F}:${F}:${F}:${F}`, 'outside 2000::/3'], ['64:ff9b:2::', 'outside 2000::/3']],
  ['100::/64', ['100::', '100::/64'], [`100::${F}:${F}:${F}:${F}`, '100::/64'], [`ff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'outside 2000::/3'], ['100:0:0:1::', '100:0:0:1::/64']],
  ['100:0:0:1::/64', ['100:0:0:1::', '100:0:0:1::/64'], [`100:0:0:1:${F}:${F}:${F}:${F}`, '100:0:0:1::/64'], [`100::${F}:${F}:${F}:${F}`, '100::/64'], ['100:0:0:2::', 'outside 2000::/3']],
  ['2001::/23', ['2001::', '2001::/32'], [`2001:1ff:${F}:${F}:${F}:${F}:${F}:${F}`, '2001::/23'], [`2000:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'public'], ['2001:200::', 'public']],
  ['2001::/32', ['2001::', '2001::/32'], [`2001:0:${F}:${F}:${F}:${F}:${F}:${F}`, '2001::/32'], [`2000:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'public'], ['2001:1::', '2001::/23']],
  ['2001:1::1/128', ['2001:1::1', '2001:1::1/128'], ['2001:1::1', '2001:1::1/128'], ['2001:1::', '2001::/23'], ['2001:1::2', '2001:1::2/128']],
  ['2001:1::2/128', ['2001:1::2', '2001:1::2/128'], ['2001:1::2', '2001:1::2/128'], ['2001:1::1', '2001:1::1/128'], ['2001:1::3', '2001:1::3/128']],
  ['2001:1::3/128', ['2001:1::3', '2001:1::3/128'], ['2001:1::3', '2001:1::3/128'], ['2001:1::2', '2001:1::2/128'], ['2001:1::4', '2001::/23']],
  ['2001:2::/48', ['2001:2::', '2001:2::/48'], [`2001:2:0:${F}:${F}:${F}:${F}:${F}`, '2001:2::/48'], [`2001:1:${F}:${F}:${F}:${F}:${F}:${F}`, '2001::/23'], ['2001:2:1::', '2001::/23']],
  ['2001:3::/32', ['2001:3::', '2001:3::/32'], [`2001:3:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:3::/32'], [`2001:2:${F}:${F}:${F}:${F}:${F}:${F}`, '2001::/23'], ['2001:4::', '2001::/23']],
  ['2001:4:112::/48', ['2001:4:112::', '2001:4:112::/48'], [`2001:4:112:${F}:${F}:${F}:${F}:${F}`, '2001:4:112::/48'], [`2001:4:111:${F}:${F}:${F}:${F}:${F}`, '2001::/23'], ['2001:4:113::', '2001::/23']],
  ['2001:10::/28', ['2001:10::', '2001:10::/28'], [`2001:1f:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:10::/28'], [`2001:f:${F}:${F}:${F}:${F}:${F}:${F}`, '2001::/23'], ['2001:20::', '2001:20::/28']],
  ['2001:20::/28', ['2001:20::', '2001:20::/28'], [`2001:2f:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:20::/28'], [`2001:1f:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:10::/28'], ['2001:30::', '2001:30::/28']],
  ['2001:30::/28', ['2001:30::', '2001:30::/28'], [`2001:3f:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:30::/28'], [`2001:2f:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:20::/28'], ['2001:40::', '2001::/23']],
  ['2001:db8::/32', ['2001:db8::', '2001:db8::/32'], [`2001:db8:${F}:${F}:${F}:${F}:${F}:${F}`, '2001:db8::/32'], [`2001:db7:${F}:${F}:${F}:${F}:${F}:${F}`, 'public'], ['2001:db9::', 'public']],
  ['2002::/16', ['2002::', '2002::/16'], [`2002:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, '2002::/16'], [`2001:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'public'], ['2003::', 'public']],
  ['2620:4f:8000::/48', ['2620:4f:8000::', '2620:4f:8000::/48'], [`2620:4f:8000:${F}:${F}:${F}:${F}:${F}`, '2620:4f:8000::/48'], [`2620:4f:7fff:${F}:${F}:${F}:${F}:${F}`, 'public'], ['2620:4f:8001::', 'public']],
  ['3fff::/20', ['3fff::', '3fff::/20'], [`3fff:fff:${F}:${F}:${F}:${F}:${F}:${F}`, '3fff::/20'], [`3ffe:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'public'], ['3fff:1000::', 'public']],
  ['5f00::/16', ['5f00::', '5f00::/16'], [`5f00:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, '5f00::/16'], [`5eff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'outside 2000::/3'], ['5f01::', 'outside 2000::/3']],
  ['fc00::/7', ['fc00::', 'fc00::/7'], [`fdff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'fc00::/7'], [`fbff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'outside 2000::/3'], ['fe00::', 'outside 2000::/3']],
  ['fe80::/10', ['fe80::', 'fe80::/10'], [`febf:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'fe80::/10'], [`fe7f:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'outside 2000::/3'], ['fec0::', 'fec0::/10']],
  ['fec0::/10', ['fec0::', 'fec0::/10'], [`feff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'fec0::/10'], [`febf:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'fe80::/10'], ['ff00::', 'ff00::/8']],
  ['ff00::/8', ['ff00::', 'ff00::/8'], [`ffff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'ff00::/8'], [`feff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`, 'fec0::/10'], null],
];

describe('webhook URL policy: the IANA special-purpose registries', () => {
  it('every block of both tables is probed, and nothing else', () => {
    expect(BOUNDARIES.map((b) => b[0]).sort()).toEqual([...IPV4_BLOCKS, ...IPV6_BLOCKS].map((b) => b.prefix).sort());
  });

  it.each(BOUNDARIES)('%s: first, last, and one address outside each end', (_block, ...probes) => {
    for (const probe of probes) {
      if (probe) expect(verdict(probe[0]), probe[0]).toBe(probe[1]);
    }
  });

  it('global unicast is 2000::/3 and nothing outside it', () => {
    expect(verdict('2000::')).toBe('public');
    expect(verdict(`1fff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`)).toBe('outside 2000::/3');
    expect(verdict(`3fff:${F}:${F}:${F}:${F}:${F}:${F}:${F}`)).toBe('public');
    expect(verdict('4000::')).toBe('outside 2000::/3');
    expect(verdict('2606:4700::1111')).toBe('public');
  });

  it('IPv4-mapped and NAT64 addresses are judged by the IPv4 address they carry', () => {
    for (const prefix of ['::ffff:', '64:ff9b::']) {
      expect(isPublicAddress(`${prefix}8.8.8.8`)).toBe(true);
      expect(isPublicAddress(`${prefix}93.184.216.34`)).toBe(true);
      for (const inner of ['127.0.0.1', '10.0.0.1', '169.254.169.254', '100.64.0.1', '192.168.1.1', '0.0.0.0', '224.0.0.1', '192.0.0.9']) {
        expect(addressProblem(`${prefix}${inner}`), `${prefix}${inner}`).toContain(inner);
      }
    }
    expect(addressProblem('::ffff:169.254.169.254')).toBe('address ::ffff:a9fe:a9fe is in ::ffff:0:0/96, IPv4-mapped Address (RFC 4291), carrying IPv4 169.254.169.254, which is in 169.254.0.0/16, Link Local (RFC 3927, not globally reachable)');
  });

  it('the other IPv4-carrying forms are refused whatever they carry, naming what they carry', () => {
    expect(addressProblem('::ffff:0:8.8.8.8')).toMatch(/IPv4-translated .* carrying IPv4 8\.8\.8\.8/);
    expect(addressProblem('::ffff:0:127.0.0.1')).toMatch(/IPv4-translated .* carrying IPv4 127\.0\.0\.1/);
    expect(addressProblem('::8.8.8.8')).toMatch(/IPv4-compatible .* carrying IPv4 8\.8\.8\.8/);
    expect(addressProblem('64:ff9b:1::808:808')).toMatch(/Local-Use IPv4\/IPv6 Translation Prefix/);
    expect(addressProblem('2002:808:808::1')).toMatch(/6to4 .* carrying 6to4 router 8\.8\.8\.8/);
    expect(addressProblem('2002:7f00:1::1')).toMatch(/carrying 6to4 router 127\.0\.0\.1/);
    // Teredo: server 65.54.227.120, client 127.0.0.1 stored inverted (0x80fffffe)
    expect(addressProblem('2001:0:4136:e378:8000:63bf:80ff:fffe')).toMatch(/TEREDO .* carrying Teredo server 65\.54\.227\.120, Teredo client 127\.0\.0\.1/);
    expect(addressProblem('2001:0:4136:e378:8000:63bf:f7f7:f7f7')).toMatch(/Teredo client 8\.8\.8\.8/);
  });

  it('reads addresses as resolvers print them, and nothing else as an address', () => {
    expect(Array.from(parseAddress('::')!)).toEqual(new Array(16).fill(0));
    expect(Array.from(parseAddress('1::')!)).toEqual([0, 1, ...new Array(14).fill(0)]);
    expect(Array.from(parseAddress('::ffff:1.2.3.4')!.slice(10))).toEqual([0xff, 0xff, 1, 2, 3, 4]);
    expect(Array.from(parseAddress('1:2:3:4:5:6:1.2.3.4')!.slice(10))).toEqual([0, 6, 1, 2, 3, 4]);
    expect(parseAddress('fe80::1%eth0')).not.toBeNull();
    expect(Array.from(parseAddress('192.0.2.1')!)).toEqual([192, 0, 2, 1]);
    for (const bad of ['1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', '::ffff:127.1', '256.0.0.1', '010.0.0.1', '0x7f.1', '2130706433', 'garbage', '', 'ex]@ample', '[::1]@x']) {
      expect(parseAddress(bad), bad).toBeNull();
      expect(addressProblem(bad), bad).toMatch(/is not an IP address/);
    }
  });
});

describe('webhook URL policy: URLs', () => {
  // every textual form the WHATWG URL parser turns into a refused address
  it.each([
    ['http://[::ffff:0:127.0.0.1]:9/hook', '::ffff:0:0:0/96'],
    ['http://[::ffff:0:7f00:1]/hook', '::ffff:0:0:0/96'],
    ['http://[0:0:0:0:ffff:0:7f00:0001]/hook', '::ffff:0:0:0/96'],
    ['http://[0::ffff:0:127.0.0.1]/hook', '::ffff:0:0:0/96'],
    ['http://[::ffff:127.0.0.1]/hook', '::ffff:0:0/96'],
    ['http://[::FFFF:7F00:0001]/hook', '::ffff:0:0/96'],
    ['http://[0:0:0:0:0:ffff:127.0.0.1]/hook', '::ffff:0:0/96'],
    ['http://[::ffff:a9fe:a9fe]/latest/meta-data', '::ffff:0:0/96'],
    ['http://[::127.0.0.1]/hook', '::/96'],
    ['http://[::7f00:1]/hook', '::/96'],
    ['http://[64:ff9b::127.0.0.1]/hook', '64:ff9b::/96'],
    ['http://[64:ff9b::10.0.0.1]/hook', '64:ff9b::/96'],
    ['http://[64:ff9b:1::a00:1]/hook', '64:ff9b:1::/48'],
    ['http://[2002:c0a8:0101::1]/hook', '2002::/16'],
    ['http://[2002:808:808::1]/hook', '2002::/16'],
    ['http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook', '2001::/32'],
    ['http://[2001:db8::1]/hook', '2001:db8::/32'],
    ['http://[3fff::1]/hook', '3fff::/20'],
    ['http://[2001:20::1]/hook', '2001:20::/28'],
    ['http://[100::1]/hook', '100::/64'],
    ['http://[fc00::1]/hook', 'fc00::/7'],
    ['http://[fd00::1]/hook', 'fc00::/7'],
    ['http://[fe80::1]/hook', 'fe80::/10'],
    ['http://[fec0::1]/hook', 'fec0::/10'],
    ['http://[ff02::1]/hook', 'ff00::/8'],
    ['http://[::1]/hook', '::1/128'],
    ['http://[0:0:0:0:0:0:0:1]/hook', '::1/128'],
    ['http://[::0001]/hook', '::1/128'],
    ['http://[::]/hook', '::/128'],
    ['http://127.0.0.1/hook', '127.0.0.0/8'],
    ['http://127.1/hook', '127.0.0.0/8'],
    ['http://127.0.1/hook', '127.0.0.0/8'],
    ['http://2130706433/hook', '127.0.0.0/8'],
    ['http://0x7f000001/hook', '127.0.0.0/8'],
    ['http://017700000001/hook', '127.0.0.0/8'],
    ['http://0x7f.1/hook', '127.0.0.0/8'],
    ['http://0177.0.0.1/hook', '127.0.0.0/8'],
    ['http://127.0.0.1./hook', '127.0.0.0/8'],
    ['http://%31%32%37.0.0.1/hook', '127.0.0.0/8'],
    ['http://\uff11\uff12\uff17.0.0.1/hook', '127.0.0.0/8'],
    ['http://127\u30020\u30020\u30021/hook', '127.0.0.0/8'],
    ['http://0/hook', '0.0.0.0/32'],
    ['http://10.1.2.3/hook', '10.0.0.0/8'],
    ['http://172.16.0.1/hook', '172.16.0.0/12'],
    ['http://192.168.1.1/hook', '192.168.0.0/16'],
    ['http://169.254.169.254/latest/meta-data', '169.254.0.0/16'],
    ['http://0xa9fea9fe/latest/meta-data', '169.254.0.0/16'],
    ['http://100.64.0.1/hook', '100.64.0.0/10'],
    ['http://192.0.0.9/hook', '192.0.0.9/32'],
    ['http://224.0.0.1/hook', '224.0.0.0/4'],
    ['http://4294967295/hook', '255.255.255.255/32'],
  ])('refuses %s (%s)', (url, block) => {
    const why = webhookUrlProblem(url, strict);
    expect(why).toContain(`in ${block}, `);
    expect(why).toMatch(/webhooks go to public unicast addresses only$/);
  });

  it.each(['http://localhost/hook', 'http://LOCALHOST./hook', 'http://api.localhost/hook', 'http://printer.local/hook', 'http://metadata.google.internal/computeMetadata'])('refuses the local name %s', (url) => {
    expect(webhookUrlProblem(url, strict)).toMatch(/is local/);
  });

  it.each(['http://[::ffff:127.1]/hook', 'http://[fe80::1%25eth0]/hook', 'http://1.2.3.4.5/hook', 'http://0x100000000/hook'])('refuses %s, which is no URL', (url) => {
    expect(webhookUrlProblem(url, strict)).toMatch(/absolute http\(s\) URL/);
  });

  it.each(['https://hooks.test/hook', 'http://93.184.216.34:8080/x', 'https://[2606:4700::1111]/x', 'http://[::ffff:8.8.8.8]/x', 'http://[64:ff9b::8.8.8.8]/x', 'http://134744072/x'])('accepts %s', (url) => {
    expect(webhookUrlProblem(url, strict)).toBeNull();
  });

  it('refuses credentials and other schemes whatever the flag', () => {
    expect(webhookUrlProblem('https://user:pw@hooks.test/', { allowPrivate: true })).toMatch(/credentials/);
    expect(webhookUrlProblem('ftp://hooks.test/', { allowPrivate: true })).toMatch(/http/);
    expect(webhookUrlProblem('not a url', { allowPrivate: true })).toMatch(/absolute/);
  });

  it('allows private targets in local development', () => {
    expect(webhookUrlProblem('http://127.0.0.1:9000/hook', { allowPrivate: true })).toBeNull();
    expect(webhookUrlProblem('http://[::ffff:0:127.0.0.1]:9000/hook', { allowPrivate: true })).toBeNull();
  });

  it('a literal and the same address from a resolver get the same verdict', () => {
    for (const [first] of BOUNDARIES.flatMap((b) => b.slice(1)).filter((p): p is [string, string] => p !== null)) {
      const url = first.includes(':') ? `http://[${first}]/` : `http://${first}/`;
      const literal = webhookUrlProblem(url, strict);
      const resolved = addressProblem(first);
      expect(literal === null ? null : literal.replace(/; webhooks go to public unicast addresses only$/, ''), first).toBe(resolved);
    }
  });
});
