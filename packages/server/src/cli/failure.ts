const sqlState = (error: unknown): string | undefined => {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
};

const HINTS: Readonly<Record<string, string>> = {
  '42P01': 'a table is missing: run `npm run migrate`',
  '42501': 'the database user lacks a right it needs',
  '28P01': 'the database password is wrong',
  '3D000': 'the database does not exist',
};

/**
 * One line for an operator command's failure. A failed query's error carries the query and its
 * parameters (the ORM puts them in the message; PostgreSQL quotes values in its own): only the
 * SQLSTATE of a database error is printed, with a hint for the common ones.
 */
export const describeFailure = (error: unknown): string => {
  const code = sqlState(error);
  if (code !== undefined) {
    const hint = HINTS[code];
    return `database error ${code}${hint ? ` (${hint})` : ''}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  return /failed query|params:/i.test(message) ? 'a database query failed' : message;
};
