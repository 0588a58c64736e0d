import { describe, expect, it } from 'vitest';
import { JOB_ID_RE, UPLOAD_ID_RE, jobIdTime, newJobId, newUploadId, randomAlnum } from './ids.ts';

describe('job ids', () => {
  it('encode their creation time and sort by it', () => {
    const a = newJobId(1_700_000_000_000);
    const b = newJobId(1_700_000_000_001);
    expect(a).toMatch(JOB_ID_RE);
    expect(jobIdTime(a)).toBe(1_700_000_000_000);
    expect(a < b).toBe(true);
  });

  it('differ within one millisecond', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newJobId(5)));
    expect(ids.size).toBe(1000);
  });

  it('use the given randomness (deterministic tests)', () => {
    const zeros = () => new Uint8Array(10);
    expect(newJobId(0, zeros)).toBe('job_' + '0'.repeat(26));
    const ones = (n: number) => new Uint8Array(n).fill(255);
    // 48 bits of time fill 10 base32 characters with 2 bits to spare: the first is at most '7'
    expect(newJobId(2 ** 48 - 1, ones)).toBe('job_7' + 'z'.repeat(25));
  });

  it('refuse times outside 48 bits', () => {
    expect(() => newJobId(-1)).toThrow(/job id time/);
    expect(() => newJobId(2 ** 48)).toThrow(/job id time/);
    expect(() => newJobId(1.5)).toThrow(/job id time/);
  });

  it('jobIdTime rejects foreign strings', () => {
    expect(jobIdTime('job_ABC')).toBeNull();
    expect(jobIdTime('upl_' + '0'.repeat(26))).toBeNull();
  });
});

describe('upload ids', () => {
  it('match the contract rule and are lowercase', () => {
    const id = newUploadId();
    expect(id).toMatch(UPLOAD_ID_RE);
    expect(id).toBe(id.toLowerCase());
  });

  it('randomAlnum is unbiased by rejecting bytes >= 252', () => {
    // a stream of 252s (rejected) then 0s: the result must be all '0'
    let calls = 0;
    const rnd = (n: number) => (calls++ === 0 ? new Uint8Array(n).fill(252) : new Uint8Array(n));
    expect(randomAlnum(8, rnd)).toBe('00000000');
  });
});
