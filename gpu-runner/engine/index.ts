/** The AMDM engine: what the runner, the CLI, the benchmark and the eval import. */
export { createEngine, AmdmEngine, type EngineOptions } from './pipeline.ts';
export { EngineInputError } from './types.ts';
export type { Engine, EngineOutput, EngineProgress, EngineResult, EngineTimings, GenerateOptions, PreviewFrame, PreviewOptions } from './types.ts';
export { ClipTokenizer } from './tokenizer.ts';
export { readModelPackage, ModelPackageError, ECOSYSTEMS } from './model-package.ts';
