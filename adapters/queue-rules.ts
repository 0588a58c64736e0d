/**
 * Argument rules that every JobQueue adapter enforces identically.
 *
 * The limits are SQS's own, so a body, a delay or a timeout that works against the memory or
 * SQLite queue on a laptop also works against SQS in production; a mistake fails locally,
 * with a message naming the value, instead of in the cloud.
 */
import type { Lease, ReceiveOptions } from '../shared/ports/queue.ts';

/** SQS returns at most 10 messages per ReceiveMessage. */
export const MAX_RECEIVE_BATCH = 10;
/** SQS VisibilityTimeout and ChangeMessageVisibility range: 0 s to 12 h. */
export const MAX_VISIBILITY_SECONDS = 43_200;
/** SQS DelaySeconds range for SendMessage: 0 s to 15 min. */
export const MAX_SEND_DELAY_SECONDS = 900;
/**
 * Our own bound on one receive call (SQS waits at most 20 s per request; the SQS adapter loops).
 * It also keeps every timer below setTimeout's 2^31 ms ceiling.
 */
export const MAX_WAIT_SECONDS = 43_200;
/**
 * 256 KiB, the SQS message limit that every region and emulator accepts. Queue messages carry
 * pointers (a job id, a tenant), never payloads, so this is far from binding.
 */
export const MAX_BODY_BYTES = 262_144;

export interface CheckedReceive {
  max: number;
  waitSeconds: number;
  visibilitySeconds: number;
  signal: AbortSignal | undefined;
}

function checkInteger(where: string, name: string, value: unknown, min: number, max: number, why: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${where}: ${name} must be an integer from ${min} to ${max} (${why}); got ${String(value)}`);
  }
  return value;
}

export function checkReceiveOptions(opts: ReceiveOptions): CheckedReceive {
  if (typeof opts !== 'object' || opts === null) {
    throw new TypeError(`receive: options must be an object with visibilitySeconds; got ${String(opts)}`);
  }
  const max = checkInteger('receive', 'max', opts.max ?? 1, 1, MAX_RECEIVE_BATCH, 'the SQS batch limit');
  const waitSeconds = checkInteger('receive', 'waitSeconds', opts.waitSeconds ?? 0, 0, MAX_WAIT_SECONDS, 'seconds');
  const visibilitySeconds = checkInteger(
    'receive',
    'visibilitySeconds',
    opts.visibilitySeconds,
    0,
    MAX_VISIBILITY_SECONDS,
    'whole seconds, the SQS range',
  );
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) {
    throw new TypeError(`receive: signal must be an AbortSignal; got ${String(opts.signal)}`);
  }
  return { max, waitSeconds, visibilitySeconds, signal: opts.signal };
}

export function checkSendDelay(delaySeconds: number | undefined): number {
  return checkInteger('send', 'delaySeconds', delaySeconds ?? 0, 0, MAX_SEND_DELAY_SECONDS, 'the SQS range');
}

export function checkExtendSeconds(visibilitySeconds: number): number {
  return checkInteger('extend', 'visibilitySeconds', visibilitySeconds, 0, MAX_VISIBILITY_SECONDS, 'the SQS range');
}

export function checkReleaseDelay(delaySeconds: number | undefined): number {
  // release is ChangeMessageVisibility on SQS, so its range is the visibility range
  return checkInteger('release', 'delaySeconds', delaySeconds ?? 0, 0, MAX_VISIBILITY_SECONDS, 'the SQS range');
}

/** The characters SQS accepts in a message body (XML 1.0 characters). */
const NOT_SQS_CHARACTER = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

export function checkBody(body: string): void {
  if (typeof body !== 'string') {
    throw new TypeError(`send: body must be a string; got ${typeof body}`);
  }
  if (body.length === 0) {
    throw new RangeError('send: body must not be empty (SQS rejects empty messages)');
  }
  const bytes = new TextEncoder().encode(body).byteLength;
  if (bytes > MAX_BODY_BYTES) {
    throw new RangeError(`send: body is ${bytes} bytes; at most ${MAX_BODY_BYTES} are allowed`);
  }
  const bad = NOT_SQS_CHARACTER.exec(body);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new RangeError(
      `send: body contains U+${code} at index ${bad.index}; SQS accepts only tab, LF, CR, ` +
        'U+0020-U+D7FF, U+E000-U+FFFD and U+10000-U+10FFFF (no lone surrogates)',
    );
  }
}

export function checkLease(where: string, lease: Lease): void {
  if (
    typeof lease !== 'object' ||
    lease === null ||
    typeof lease.handle !== 'string' ||
    lease.handle === '' ||
    typeof lease.messageId !== 'string'
  ) {
    throw new TypeError(`${where}: expected a Lease returned by receive(); got ${JSON.stringify(lease)}`);
  }
}

/** Queue names follow SQS's rule, so the same name works for a SQLite queue and an SQS queue. */
export function checkQueueName(where: string, name: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,80}$/.test(name)) {
    throw new RangeError(
      `${where}: queue name ${JSON.stringify(name)} is invalid; use 1-80 characters from A-Z a-z 0-9 _ -`,
    );
  }
  return name;
}

/** SQS allows maxReceiveCount from 1 to 1000 in a redrive policy. */
export function checkMaxReceives(where: string, maxReceives: number): number {
  return checkInteger(where, 'deadLetter.maxReceives', maxReceives, 1, 1000, 'the SQS redrive range');
}
