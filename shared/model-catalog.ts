/**
 * The model catalog file: what GET /v1/models serves on Lambda, where no model files exist.
 *
 * The edge Lambda cannot ask an engine (no onnxruntime, no ONNX files), so the catalog is
 * generated from the model packages with the engine's own catalog code
 * (`npm run models:catalog`, tools/write-model-catalog.ts), written next to the packages'
 * checksums.json, and copied into the Lambda bundle by `sst deploy` (infra/edge.ts). The file
 * records the SHA-256 of that checksums.json, so a deploy can tell a catalog that no longer
 * describes the models beside it, and refuse it.
 *
 * Serialization is deterministic (models sorted by id, two-space JSON, one trailing newline):
 * generating twice from the same packages gives the same bytes, so a stale committed catalog
 * shows up as a diff.
 *
 * It lives in shared/ because the edge Lambda's root reads it and must not import the engine
 * (no onnxruntime in its bundle), while the engine's side writes it; the one shared module
 * that reads files (node:fs), so only roots, infra and tools import it, never createApp.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ModelInfo } from './contract/models.ts';

export const MODEL_CATALOG_SCHEMA = 'amdm.catalog/v1';
/** The file's name inside the edge Lambda's bundle (the root of the function package). */
export const BUNDLED_CATALOG_FILE = 'model-catalog.json';
/** The model packages' checksum manifest (written by tools/shapes/export.py, read by model sync). */
export const CHECKSUMS_FILE = 'checksums.json';

const CatalogFile = z
  .object({
    schema: z.literal(MODEL_CATALOG_SCHEMA),
    /** SHA-256 of the checksums.json beside the packages it was generated from; null if there was none */
    models_checksums_sha256: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
    models: z.array(ModelInfo).min(1),
  })
  .strict();

export interface ModelCatalog {
  models: ModelInfo[];
  modelsChecksumsSha256: string | null;
}

export class ModelCatalogError extends Error {
  override name = 'ModelCatalogError';
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The catalog file's exact text. */
export function formatModelCatalog(catalog: ModelCatalog): string {
  const models = [...catalog.models].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const ids = models.map((m) => m.id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) throw new ModelCatalogError(`two models have the id "${twice}"`);
  const file = CatalogFile.parse({ schema: MODEL_CATALOG_SCHEMA, models_checksums_sha256: catalog.modelsChecksumsSha256, models });
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** Parses and checks a catalog file; errors name the file and the field at fault. */
export function parseModelCatalog(text: string, where: string): ModelCatalog {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelCatalogError(`${where} is not JSON: ${(err as Error).message}`);
  }
  const parsed = CatalogFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ModelCatalogError(`${where}: field "${issue.path.join('.') || '(root)'}": ${issue.message}; regenerate it with \`npm run models:catalog\``);
  }
  const ids = parsed.data.models.map((m) => m.id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) throw new ModelCatalogError(`${where}: two models have the id "${twice}"`);
  return { models: parsed.data.models, modelsChecksumsSha256: parsed.data.models_checksums_sha256 };
}

export function readModelCatalog(path: string): ModelCatalog {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ModelCatalogError(`no model catalog at ${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}); generate it with \`npm run models:catalog\``);
  }
  return parseModelCatalog(text, path);
}

/** SHA-256 of the checksums.json in `modelsDir`, or null when there is none. */
export function modelsChecksumsSha256(modelsDir: string): string | null {
  const path = join(modelsDir, CHECKSUMS_FILE);
  return existsSync(path) ? sha256Hex(readFileSync(path)) : null;
}

/**
 * Reads a catalog for deploying it, and refuses one that no longer describes the model
 * packages beside it (their checksums.json changed since it was generated).
 */
export function readDeployableCatalog(path: string): ModelCatalog {
  const catalog = readModelCatalog(path);
  const current = modelsChecksumsSha256(dirname(path));
  if (current !== null && current !== catalog.modelsChecksumsSha256) {
    throw new ModelCatalogError(
      `${path} is stale: ${join(dirname(path), CHECKSUMS_FILE)} changed since it was generated; run \`npm run models:catalog\` and deploy again`,
    );
  }
  return catalog;
}
