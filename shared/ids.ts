/**
 * Identifiers. Everything here is lowercase on purpose: ids become store keys, and a
 * case-insensitive filesystem (macOS) must never fold two ids into one file.
 *
 * Job ids sort by creation time (a 48-bit millisecond timestamp in Crockford base32, like
 * ULID, followed by 80 random bits), so listing job folders or logs in byte order is
 * listing them by age, and two edges never need to coordinate to mint one.
 */

/** Crockford base32 in lowercase: digits sort before letters, as in ASCII. */
const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';
const ALNUM = '0123456789abcdefghijklmnopqrstuvwxyz';

export type RandomBytes = (n: number) => Uint8Array;

export const cryptoRandomBytes: RandomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));

export const JOB_ID_RE = /^job_[0-9a-hjkmnp-tv-z]{26}$/;
export const UPLOAD_ID_RE = /^upl_[A-Za-z0-9]{10,40}$/;

/** `job_` + 10 chars of time + 16 chars of randomness (26 chars, as a ULID). */
export function newJobId(nowMs: number, random: RandomBytes = cryptoRandomBytes): string {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0 || nowMs >= 2 ** 48) {
    throw new RangeError(`job id time must be a millisecond timestamp in [0, 2^48) (got ${nowMs})`);
  }
  let time = '';
  let t = nowMs;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return `job_${time}${encodeBits(random(10), 16)}`;
}

/** The creation time encoded in a job id (ms), or null if it is not one of ours. */
export function jobIdTime(id: string): number | null {
  if (!JOB_ID_RE.test(id)) return null;
  let t = 0;
  for (const ch of id.slice(4, 14)) t = t * 32 + CROCKFORD.indexOf(ch);
  return t;
}

/** `upl_` + 24 lowercase alphanumerics (~124 bits), matching the contract's upload_id rule. */
export function newUploadId(random: RandomBytes = cryptoRandomBytes): string {
  return `upl_${randomAlnum(24, random)}`;
}

/**
 * Uniform lowercase alphanumerics by rejection sampling (bytes >= 252 are redrawn, so no
 * character is more likely than another).
 */
export function randomAlnum(length: number, random: RandomBytes = cryptoRandomBytes): string {
  let out = '';
  while (out.length < length) {
    for (const b of random(length - out.length + 8)) {
      if (b < 252 && out.length < length) out += ALNUM[b % 36];
    }
  }
  return out;
}

/** `bits.length * 8` bits, taken 5 at a time into `chars` Crockford characters. */
function encodeBits(bytes: Uint8Array, chars: number): string {
  let out = '';
  let acc = 0;
  let n = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    n += 8;
    while (n >= 5 && out.length < chars) {
      out += CROCKFORD[(acc >>> (n - 5)) & 31];
      n -= 5;
    }
    acc &= (1 << n) - 1;
  }
  return out;
}
