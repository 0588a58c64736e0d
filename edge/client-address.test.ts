import { describe, expect, it } from 'vitest';
import { addressBucket, clientAddress, type ProxyTrust } from './client-address.ts';

// the root's parse is node:net's; here a literal is an address when it has no spaces
const trust = (...proxies: string[]): ProxyTrust => ({
  parse: (s) => (/^[0-9a-f.:]+$/i.test(s) ? s.toLowerCase() : null),
  trusted: (a) => proxies.includes(a),
});

describe('clientAddress', () => {
  it('an untrusted peer is the client, whatever X-Forwarded-For says', () => {
    expect(clientAddress('203.0.113.5', '198.51.100.1', trust('10.0.0.1'))).toBe('203.0.113.5');
    expect(clientAddress('203.0.113.5', undefined, trust('203.0.113.5'))).toBe('203.0.113.5');
  });

  it('through trusted proxies, the rightmost entry none of them is', () => {
    const t = trust('10.0.0.1', '10.0.0.2');
    expect(clientAddress('10.0.0.1', '198.51.100.7', t)).toBe('198.51.100.7');
    // the client's own header in front of the proxy's entry does not count
    expect(clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.7', t)).toBe('198.51.100.7');
    expect(clientAddress('10.0.0.1', '198.51.100.7, 10.0.0.2', t)).toBe('198.51.100.7');
    // all trusted: the farthest one
    expect(clientAddress('10.0.0.1', '10.0.0.2', t)).toBe('10.0.0.2');
    // a malformed entry stops the walk at the last trusted hop
    expect(clientAddress('10.0.0.1', 'not an address, 10.0.0.2', t)).toBe('10.0.0.2');
    expect(clientAddress('10.0.0.1', '', t)).toBe('10.0.0.1');
  });
});

describe('addressBucket', () => {
  it('IPv4 alone, IPv6 by its /64', () => {
    expect(addressBucket('198.51.100.7')).toBe('198.51.100.7');
    expect(addressBucket('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressBucket('::1')).toBe('0:0:0:0::/64');
    expect(addressBucket('::ffff:1.2.3.4')).toBe('0:0:0:0::/64');
    expect(addressBucket('2001:db8:1:2:3::')).toBe('2001:db8:1:2::/64');
  });
});
