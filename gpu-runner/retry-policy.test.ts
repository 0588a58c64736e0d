/**
 * The retry decision on its own: which errors fail a job at once, when the last attempt gives
 * up, and the backoff's bounds (the worker loop's tests cover the same through the queue).
 */
import { describe, expect, it } from 'vitest';
import { EngineInputError } from './engine/types.ts';
import { PermanentJobError, RetryPolicy, cleanMessage } from './retry-policy.ts';

const policy = (random = () => 0.5) => new RetryPolicy({ maxReceives: 3, backoff: { baseSeconds: 10, maxSeconds: 600 }, random });

describe('RetryPolicy', () => {
  it('fails a job that cannot run as specified at once, naming the field', () => {
    for (const err of [new EngineInputError('the reference image is not a PNG', 'models[0].reference_image'), new PermanentJobError('the upload no longer exists', 'models[1].reference_image')]) {
      const d = policy().decide(err, 1, null);
      expect(d.retry).toBe(false);
      if (d.retry) continue;
      expect(d.permanent).toBe(true);
      expect(d.problem).toMatchObject({ type: 'urn:amdm:problem:invalid-job', status: 422, detail: err.message, errors: [{ field: err.field, message: err.message }] });
    }
  });

  it('retries anything else until the attempt that reaches maxReceives, which fails the job with the reason', () => {
    const err = new Error('CUDA error at /opt/amdm/unet.onnx: device lost\nstack');
    const first = policy().decide(err, 1, null);
    expect(first).toMatchObject({ retry: true, error: 'CUDA error at <path>: device lost', cause: err });
    expect(policy().decide(err, 2, null).retry).toBe(true);
    const last = policy().decide(err, 3, null);
    expect(last).toMatchObject({ retry: false, permanent: false, problem: { type: 'urn:amdm:problem:job-failed', status: 500, detail: 'gave up after 3 attempts; the last one failed with: CUDA error at <path>: device lost' } });
  });

  it('reports a timed-out attempt as a timeout, not as the abort that ended it', () => {
    const d = policy().decide(new DOMException('timeout', 'AbortError'), 1, 3600);
    expect(d).toMatchObject({ retry: true, error: 'the job ran longer than 3600 s' });
  });

  it('backs off exponentially with equal jitter, capped', () => {
    expect(policy(() => 0).backoffSeconds(1)).toBe(5);
    expect(policy(() => 0.999_999).backoffSeconds(1)).toBe(10);
    expect(policy(() => 0).backoffSeconds(3)).toBe(20);
    expect(policy(() => 0.999_999).backoffSeconds(30)).toBe(600);
    expect(policy(() => 0).backoffSeconds(30)).toBe(300);
  });

  it('cleans error text for clients: one line, no paths, bounded', () => {
    expect(cleanMessage('failed to open file:///home/amdm/models/unet.onnx\nat x')).toBe('failed to open <path>');
    expect(cleanMessage('x'.repeat(1000))).toHaveLength(300);
  });
});
