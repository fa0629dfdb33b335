import type { Db } from './database.ts';

/** A database handle or an open transaction: repository functions accept either. */
export type Executor = Db | Parameters<Parameters<Db['transaction']>[0]>[0];

/** SQLSTATE of a foreign-key violation: the row referred to a device removed meanwhile. */
export const FOREIGN_KEY_VIOLATION = '23503';
export const UNIQUE_VIOLATION = '23505';

export const sqlState = (error: unknown): string | undefined => {
  const code = (error as { code?: unknown; cause?: { code?: unknown } } | null)?.code;
  if (typeof code === 'string') return code;
  const causeCode = (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof causeCode === 'string' ? causeCode : undefined;
};

/** Failures that mean "database unavailable for now" (unreachable, full) rather than "bad query". */
export const isDatabaseUnavailable = (error: unknown): boolean => {
  const state = sqlState(error);
  // 08: connection; 57P01-03: the server shutting down or starting; 53: out of resources (disk
  // full, memory, connections), which passes as the operator makes room.
  if (state !== undefined && /^(08|57P0[1-3]|53)/.test(state)) return true;
  // The ORM wraps a driver's error ("Failed query: …") and keeps it as the cause.
  const cause = (error as { cause?: unknown } | null)?.cause;
  const messages = [error, cause].map((e) => (e instanceof Error ? e.message : '')).join('\n');
  return /ECONNREFUSED|ECONNRESET|timeout exceeded when trying to connect|Connection terminated|connect ETIMEDOUT|Query read timeout/.test(
    messages,
  );
};
