import type { RelayConfig } from '../../config.ts';
import type { Database } from '../../db/database.ts';

/** Reads the command's options, failing (exit 2) with a line that says what is wrong. */
export interface Options {
  integer(name: string, fallback: number, min: number, max: number): number;
  readonly json: boolean;
}

export interface AdminContext {
  readonly database: Database;
  readonly config: RelayConfig;
  /** The database's URL (DATABASE_URL, or the embedded server's). */
  readonly url: string;
  /** The command's arguments after its name (`invite revoke ID`: [ID]). */
  readonly positionals: readonly string[];
  readonly options: Options;
  /** Prints one line on stdout. */
  out(line: string): void;
  /** Stops with a usage or refusal message (exit 2 for usage, see the caller). */
  fail(message: string): never;
}

/** One `npm run admin` command; returns the exit code. */
export type AdminCommand = (context: AdminContext) => Promise<number>;
