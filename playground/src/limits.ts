/**
 * The request limits the page needs to size its inputs. Copied from LIMITS in
 * shared/contract/job-request.ts because importing that module would bundle zod into the
 * page; playground/src/limits.test.ts fails when the two drift apart.
 */
export const UI_LIMITS = {
  maxModels: 4,
  maxPromptChars: 1000,
  maxPhraseChars: 200,
  minSteps: 1,
  maxSteps: 100,
  maxImages: 4,
  maxGuidance: 30,
  maxSeed: 0xffff_ffff,
} as const;

/**
 * Official defaults (OFFICIAL in shared/amdm/math.ts): shown as placeholders, and
 * used to tell a past job's defaults from the values its request gave (form-load.ts).
 */
export const UI_OFFICIAL = { omega: 0.5, omega1: 0.47, omega2: 0.5, pBase: 55, pAux: 45, latentNorm: 128 } as const;

/** Request defaults shown as placeholders (the contract's zod defaults). */
export const UI_DEFAULTS = { steps: 20, guidance: 7.5, window: [1, 3], referenceScale: 0.8 } as const;
