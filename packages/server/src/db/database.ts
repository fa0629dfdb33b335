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
  // The pool listens for errors only on idle connections. A checked-out one (a transaction, the
  // queue's insert) whose socket dies emits 'error' with nobody listening, which killed the relay
  // when the database restarted or the network dropped (seen in the fault suite). Its query
  // already fails to its caller; this listener only keeps the process alive.
  pool.on('connect', (client) => {
    client.on('error', (error) =>
      log.debug({ err: safeError(error) }, 'database connection failed while in use'),
    );
  });
  return {
    pool,
    db: drizzle(pool, { schema }),
    close: () => pool.end(),
  };
};
