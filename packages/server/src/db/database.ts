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
 * The longest one query may take before the relay gives up on its connection (and the request
 * answers 503). Without it, a query on a connection the network silently dropped (a partition, a
 * hung host) waited forever, and so did its client: seen in the fault suite. A send makes up to
 * four queries in turn, so that even then it answers well within the 30 s request timeout; far
 * above what a query of the request path takes. Migrations at start run on a connection of their
 * own, without it.
 */
export const QUERY_TIMEOUT_MS = 5_000;

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
    query_timeout: QUERY_TIMEOUT_MS,
    keepAlive: true,
    application_name: 'privcomm-relay',
    // The hot statements are named (repositories/envelopes.ts) so that each is planned once per
    // connection. PostgreSQL's default (auto) re-planned those that read arrays of keys on every
    // execution: it estimates unnest($1) at 10 rows, which makes the generic plan look dearer than
    // a custom plan for the usual single key. Re-planning the send path's device-set lookup cost
    // 127 µs of PostgreSQL CPU per query against 43 (85 against 28 per message at a fixed 4,000
    // msg/s). The relay's queries are key lookups whatever the values, so one generic plan serves
    // each; the setting is the session's, so no statement may rely on its parameters' values for
    // its plan (the janitor writes its LIMIT into the statement). Set by a query before the
    // connection is first used (a connection that cannot set it is not used), not as a startup
    // option, which a connection pooler in front may refuse.
    onConnect: async (client: pg.ClientBase) => {
      await client.query('SET plan_cache_mode = force_generic_plan');
    },
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
