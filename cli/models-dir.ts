import { fileURLToPath } from 'node:url';

/** The built-in models folder of this checkout, unless AMDM_MODELS_DIR or --models says otherwise. */
export function defaultModelsDir(): string {
  return process.env.AMDM_MODELS_DIR ?? fileURLToPath(new URL('../models/', import.meta.url));
}
