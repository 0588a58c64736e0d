import { describe, expect, it } from 'vitest';
import { OFFICIAL } from '../../shared/amdm/math.ts';
import { Aggregation, JobRequest, LIMITS, ModelSpec, ReferenceImage, Sampler } from '../../shared/contract/index.ts';
import { UI_DEFAULTS, UI_LIMITS, UI_OFFICIAL } from './limits.ts';

describe('the page keeps the contract numbers it copies', () => {
  it('limits and official defaults match shared/contract', () => {
    for (const [k, v] of Object.entries(UI_LIMITS)) expect(v, k).toBe(LIMITS[k as keyof typeof LIMITS]);
    expect(UI_OFFICIAL).toEqual(OFFICIAL);
  });

  it('placeholder defaults are the ones the contract fills in', () => {
    expect(Sampler.parse({}).steps).toBe(UI_DEFAULTS.steps);
    expect(ModelSpec.parse({ id: 'm', role: 'base', prompt: '' }).guidance_scale).toBe(UI_DEFAULTS.guidance);
    expect(Aggregation.parse({}).window).toEqual(UI_DEFAULTS.window);
    expect(ReferenceImage.parse({ upload_id: 'upl_0123456789' }).scale).toBe(UI_DEFAULTS.referenceScale);
    expect(JobRequest.parse({ models: [{ id: 'm', role: 'base', prompt: '' }] }).sampler.steps).toBe(UI_DEFAULTS.steps);
  });
});
