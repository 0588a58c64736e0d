/**
 * The condition registry covers exactly the contract's optional conditions, and each
 * module's name keys its manifest section and its unet_inputs sources.
 */
import { describe, expect, it } from 'vitest';
import { ModelInfo } from '../../../shared/contract/index.ts';
import { Manifest } from '../model-package.ts';
import { CONDITION_LIST, CONDITION_SOURCES, CONDITIONS, textEncoderOutputs } from './index.ts';

describe('the condition registry', () => {
  it('has one module for every entry of ModelInfo.conditions but the prompt', () => {
    const contract = Object.keys(ModelInfo.shape.conditions.shape).filter((k) => k !== 'prompt');
    expect(Object.keys(CONDITIONS).sort()).toEqual(contract.sort());
    for (const [name, c] of Object.entries(CONDITIONS)) expect(c.name).toBe(name);
  });

  it("keys each module's sources and manifest section by its name", () => {
    expect(new Set(CONDITION_SOURCES).size).toBe(CONDITION_SOURCES.length);
    for (const c of CONDITION_LIST) {
      for (const s of c.sources) expect(s.startsWith(`${c.name}.`), s).toBe(true);
      expect(Object.keys(Manifest.shape)).toContain(c.name);
      expect(c.info(undefined), `${c.name}: a model without the section shows null`).toBeNull();
    }
  });

  it('asks the text encoder for the pooled output only when a condition reads it', () => {
    expect(textEncoderOutputs({})).toEqual(['last_hidden_state']);
    expect(textEncoderOutputs({ grounding: {} })).toEqual(['last_hidden_state', 'pooler_output']);
    expect(textEncoderOutputs({ reference_image: {} })).toEqual(['last_hidden_state']);
  });
});
