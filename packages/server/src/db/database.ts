import pg from 'pg';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { Logger } from 'pino';
import { safeError } from '../logger.ts';
import * as schema from './schema.ts';

/** Drizzle over the pool; `$client` is the pool itself, for the few statements the ORM slows. */
export type Db = NodePgDatabase<typeof schema> & { $client: pg.Pool };

export interface Database {
  readonly pool: pg.Pool;
  readonly db: Db;
  close(): Promise<void>;
}

/**
 * One pool per relay instance. The pool's own errors (a backend killed, the server restarted)
 * must not crash the process: the failing query already reports to its caller, and the next one
 * gets a fresh connection.
 */
export const openDatabase = (url: string, poolSize: number, log: Logger): Database => {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: 'privcomm-relay',
  });
  pool.on('error', (error) =>
    log.warn({ err: safeError(error) }, 'idle database connection failed'),
  );
  return {
    pool,
    db: drizzle(pool, { schema }),
    close: () => pool.end(),
  };
};
