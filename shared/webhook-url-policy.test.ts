import { describe, expect, it } from 'vitest';
import { isPublicAddress, parseIPv6, webhookUrlProblem } from './webhook-url-policy.ts';

const strict = { allowPrivate: false };

describe('webhook URL policy', () => {
  it.each([
    'http://localhost/hook',
    'http://LOCALHOST./hook',
    'http://api.localhost/hook',
    'http://printer.local/hook',
    'http://metadata.google.internal/computeMetadata',
    'http://127.0.0.1/hook',
    'http://127.1/hook',
    'http://2130706433/hook',
    'http://0x7f000001/hook',
    'http://10.1.2.3/hook',
    'http://172.16.0.1/hook',
    'http://192.168.1.1/hook',
    'http://169.254.169.254/latest/meta-data',
    'http://100.64.0.1/hook',
    'http://0.0.0.0/hook',
    'http://[::1]/hook',
    'http://[::]/hook',
    'http://[fe80::1]/hook',
    'http://[fd00::1]/hook',
    'http://[::ffff:127.0.0.1]/hook',
    'http://[::ffff:a9fe:a9fe]/hook',
    'http://[64:ff9b::10.0.0.1]/hook',
    'http://[2002:c0a8:0101::1]/hook',
    'http://224.0.0.1/hook',
  ])('refuses %s', (url) => {
    expect(webhookUrlProblem(url, strict)).toMatch(/local|loopback|private/);
  });

  it.each(['https://example.com/hook', 'http://93.184.216.34:8080/x', 'https://[2606:4700::1111]/x'])('accepts %s', (url) => {
    expect(webhookUrlProblem(url, strict)).toBeNull();
  });

  it('refuses credentials and other schemes whatever the flag', () => {
    expect(webhookUrlProblem('https://user:pw@example.com/', { allowPrivate: true })).toMatch(/credentials/);
    expect(webhookUrlProblem('ftp://example.com/', { allowPrivate: true })).toMatch(/http/);
    expect(webhookUrlProblem('not a url', { allowPrivate: true })).toMatch(/absolute/);
  });

  it('allows private targets in local development', () => {
    expect(webhookUrlProblem('http://127.0.0.1:9000/hook', { allowPrivate: true })).toBeNull();
  });

  it('classifies resolved addresses', () => {
    expect(isPublicAddress('8.8.8.8')).toBe(true);
    expect(isPublicAddress('10.0.0.1')).toBe(false);
    expect(isPublicAddress('::1')).toBe(false);
    expect(isPublicAddress('2001:4860:4860::8888')).toBe(true);
    expect(isPublicAddress('fe80::1%eth0')).toBe(false);
    expect(isPublicAddress('garbage')).toBe(false);
  });

  it('parses IPv6 forms', () => {
    expect(parseIPv6('::')).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseIPv6('1::')).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseIPv6('::ffff:1.2.3.4')).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    expect(parseIPv6('1:2:3:4:5:6:7:8')).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(parseIPv6('1:2:3:4:5:6:1.2.3.4')).toEqual([1, 2, 3, 4, 5, 6, 0x0102, 0x0304]);
    expect(parseIPv6('1:2:3:4:5:6:7:8:9')).toBeNull();
    expect(parseIPv6('1::2::3')).toBeNull();
    expect(parseIPv6('12345::')).toBeNull();
  });
});
