/**
 * The one place the embedded adapters read a full disk out of an error: ENOSPC and EDQUOT from
 * the filesystem, SQLITE_FULL from SQLite (which is how SQLite reports ENOSPC). Callers above
 * the ports then see a typed StorageFullError and never parse errno strings.
 */
import { StorageFullError } from '../../shared/ports/store.ts';

/** The StorageFullError `err` stands for, or null when it is another failure. */
export function asStorageFull(err: unknown, where: string): StorageFullError | null {
  if (err instanceof StorageFullError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') return new StorageFullError(where, code, { cause: err });
  return null;
}
