import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/**
 * Applies the SQL files that `drizzle-kit generate` wrote to migrations/, in journal order, each
 * in its own transaction. An advisory lock serialises instances that start together on one
 * database; the plain SQL runs unchanged on PostgreSQL 15 and on the embedded server.
 */

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
const LOCK_KEY = 7_451_203_311; // any constant; shared by every relay instance

interface Journal {
  entries: { idx: number; tag: string }[];
}

export interface Migration {
  readonly tag: string;
  readonly statements: string[];
}

export const readMigrations = (dir: string = MIGRATIONS_DIR): Migration[] => {
  const journal = JSON.parse(
    readFileSync(path.join(dir, 'meta', '_journal.json'), 'utf8'),
  ) as Journal;
  return [...journal.entries]
    .sort((a, b) => a.idx - b.idx)
    .map(({ tag }) => ({
      tag,
      statements: readFileSync(path.join(dir, `${tag}.sql`), 'utf8')
        .split('--> statement-breakpoint')
        .map((statement) => statement.trim())
        .filter((statement) => statement !== ''),
    }));
};

/** Returns the tags it applied (empty when the database was up to date). */
export const migrate = async (pool: pg.Pool, migrations = readMigrations()): Promise<string[]> => {
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         tag text PRIMARY KEY,
         applied_on date NOT NULL DEFAULT current_date
       )`,
    );
    const done = new Set(
      (await client.query<{ tag: string }>('SELECT tag FROM schema_migrations')).rows.map(
        (row) => row.tag,
      ),
    );
    for (const migration of migrations) {
      if (done.has(migration.tag)) continue;
      await client.query('BEGIN');
      try {
        for (const statement of migration.statements) await client.query(statement);
        await client.query('INSERT INTO schema_migrations (tag) VALUES ($1)', [migration.tag]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${migration.tag} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
      applied.push(migration.tag);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    client.release();
  }
  return applied;
};
