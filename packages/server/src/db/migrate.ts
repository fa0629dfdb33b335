import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/**
 * Applies and rolls back the SQL migrations in migrations/. Each `NNNN_name.sql` (written by
 * `drizzle-kit generate`, listed in meta/_journal.json) has its way back beside it in
 * `NNNN_name.down.sql`, written and reviewed like the way forward. A down file whose first lines
 * include `-- data-loss: <what is lost>` cannot be undone without losing data, and rolls back only
 * when the caller says so explicitly.
 *
 * Every step runs in its own transaction, under one advisory lock shared by every relay instance
 * and the `npm run migrate` command, so two of them never change the schema at once. The plain
 * SQL runs unchanged on PostgreSQL 15 and on the embedded server.
 */

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
const LOCK_KEY = 7_451_203_311; // any constant; shared by every relay instance

interface Journal {
  entries: { idx: number; tag: string }[];
}

export interface Migration {
  readonly tag: string;
  readonly statements: string[];
  /** The statements of the way back; undefined when the down file is missing. */
  readonly down: string[] | undefined;
  /** What rolling back loses, from the down file's `-- data-loss:` line; undefined if nothing. */
  readonly dataLoss: string | undefined;
}

/** The database holds migrations this relay does not know: a newer relay migrated it. */
export class SchemaTooNewError extends Error {
  constructor(
    readonly unknownTags: readonly string[],
    readonly lastKnownTag: string | undefined,
  ) {
    super(
      `the database schema is newer than this relay (unknown migration ${unknownTags.join(', ')}): ` +
        `run the newer relay, or roll back with its \`npm run migrate -- --down --to ${lastKnownTag ?? '<tag>'}\` first`,
    );
    this.name = 'SchemaTooNewError';
  }
}

/** A rollback that was refused before anything changed; the message says what to do. */
export class RollbackRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RollbackRefusedError';
  }
}

const splitStatements = (sql: string): string[] =>
  sql
    .split('--> statement-breakpoint')
    .map((statement) => statement.trim())
    .filter((statement) => statement !== '');

export const readMigrations = (dir: string = MIGRATIONS_DIR): Migration[] => {
  const journal = JSON.parse(
    readFileSync(path.join(dir, 'meta', '_journal.json'), 'utf8'),
  ) as Journal;
  return [...journal.entries]
    .sort((a, b) => a.idx - b.idx)
    .map(({ tag }) => {
      const downFile = path.join(dir, `${tag}.down.sql`);
      const downSql = existsSync(downFile) ? readFileSync(downFile, 'utf8') : undefined;
      return {
        tag,
        statements: splitStatements(readFileSync(path.join(dir, `${tag}.sql`), 'utf8')),
        down: downSql === undefined ? undefined : splitStatements(downSql),
        dataLoss: downSql === undefined ? undefined : /^-- data-loss: (.+)$/m.exec(downSql)?.[1],
      };
    });
};

/** Runs `work` on one connection holding the migration lock, with schema_migrations present. */
const underLock = async <T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient, applied: string[]) => Promise<T>,
): Promise<T> => {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         tag text PRIMARY KEY,
         applied_on date NOT NULL DEFAULT current_date
       )`,
    );
    const applied = (
      await client.query<{ tag: string }>('SELECT tag FROM schema_migrations ORDER BY tag')
    ).rows.map((row) => row.tag);
    return await work(client, applied);
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    client.release();
  }
};

const refuseNewerSchema = (applied: readonly string[], migrations: readonly Migration[]): void => {
  const known = new Set(migrations.map((migration) => migration.tag));
  const unknown = applied.filter((tag) => !known.has(tag));
  if (unknown.length > 0) throw new SchemaTooNewError(unknown, migrations.at(-1)?.tag);
};

const runInTransaction = async (
  client: pg.PoolClient,
  what: string,
  statements: readonly string[],
  bookkeeping: () => Promise<unknown>,
): Promise<void> => {
  await client.query('BEGIN');
  try {
    for (const statement of statements) await client.query(statement);
    await bookkeeping();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw new Error(`${what} failed: ${(error as Error).message}`, { cause: error });
  }
};

/**
 * Applies the pending migrations; returns the tags it applied (empty when up to date). Refuses,
 * changing nothing, a database that holds a migration this relay does not know.
 */
export const migrate = async (pool: pg.Pool, migrations = readMigrations()): Promise<string[]> =>
  underLock(pool, async (client, applied) => {
    refuseNewerSchema(applied, migrations);
    const done = new Set(applied);
    const newlyApplied: string[] = [];
    for (const migration of migrations) {
      if (done.has(migration.tag)) continue;
      await runInTransaction(client, `migration ${migration.tag}`, migration.statements, () =>
        client.query('INSERT INTO schema_migrations (tag) VALUES ($1)', [migration.tag]),
      );
      newlyApplied.push(migration.tag);
    }
    return newlyApplied;
  });

export interface RollbackOptions {
  /** Roll back every migration after this one (which stays). Default: only the last one. */
  readonly to?: string | undefined;
  /** Allow rolling back migrations whose down file declares `-- data-loss:`. */
  readonly allowDataLoss?: boolean;
}

/**
 * Rolls back applied migrations, newest first, each in its own transaction; returns the tags it
 * rolled back. Everything it would undo is checked first (known, has a down file, no undeclared
 * permission to lose data), so a refusal changes nothing.
 */
export const rollback = async (
  pool: pg.Pool,
  options: RollbackOptions = {},
  migrations = readMigrations(),
): Promise<string[]> =>
  underLock(pool, async (client, applied) => {
    refuseNewerSchema(applied, migrations);
    const done = new Set(applied);
    const appliedInOrder = migrations.filter((migration) => done.has(migration.tag));
    let undo: Migration[];
    if (options.to === undefined) {
      undo = appliedInOrder.slice(-1);
    } else {
      const keep = appliedInOrder.findIndex((migration) => migration.tag === options.to);
      if (keep === -1) {
        throw new RollbackRefusedError(
          `migration ${options.to} is not applied to this database; applied: ${appliedInOrder.map((migration) => migration.tag).join(', ') || 'none'}`,
        );
      }
      undo = appliedInOrder.slice(keep + 1);
    }
    undo.reverse();
    for (const migration of undo) {
      if (migration.down === undefined) {
        throw new RollbackRefusedError(
          `migration ${migration.tag} has no way back (${migration.tag}.down.sql is missing); nothing was rolled back`,
        );
      }
      if (migration.dataLoss !== undefined && options.allowDataLoss !== true) {
        throw new RollbackRefusedError(
          `rolling back ${migration.tag} loses data (${migration.dataLoss}); nothing was rolled back. ` +
            'Back up the database, then repeat with --allow-data-loss',
        );
      }
    }
    for (const migration of undo) {
      await runInTransaction(
        client,
        `rollback of ${migration.tag}`,
        migration.down as string[],
        () => client.query('DELETE FROM schema_migrations WHERE tag = $1', [migration.tag]),
      );
    }
    return undo.map((migration) => migration.tag);
  });

/**
 * For a relay started with MIGRATE_ON_START=false: refuses a database migrated by a newer relay,
 * and one that still lacks some of this relay's migrations.
 */
export const checkSchema = async (pool: pg.Pool, migrations = readMigrations()): Promise<void> => {
  const table = await pool.query<{ present: boolean }>(
    "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
  );
  const applied = table.rows[0]?.present
    ? (await pool.query<{ tag: string }>('SELECT tag FROM schema_migrations')).rows.map(
        (row) => row.tag,
      )
    : [];
  refuseNewerSchema(applied, migrations);
  const done = new Set(applied);
  const missing = migrations.filter((migration) => !done.has(migration.tag));
  if (missing.length > 0) {
    throw new Error(
      `the database lacks migration ${missing.map((migration) => migration.tag).join(', ')}: run \`npm run migrate\` (MIGRATE_ON_START=false)`,
    );
  }
};
