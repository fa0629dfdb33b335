import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  migrate,
  readMigrations,
  rollback,
  RollbackRefusedError,
  SchemaTooNewError,
  checkSchema,
  type Migration,
} from '../src/db/migrate.ts';
import { createTestDatabase } from './support/database.ts';
import { runServerScript } from './support/relay.ts';

/**
 * Every migration goes forward, back and forward again on a database holding rows in every table:
 * the schema (read from the catalog) after each way back equals the one before the migration, and
 * after each way forward again the one after it; no row is lost unless the down file declares
 * `-- data-loss:`. The loop reads migrations/ itself, so a new migration is tested without editing
 * this file. It runs on whichever PostgreSQL the run uses (embedded, or PostgreSQL 15 in CI).
 */

const MIGRATIONS = readMigrations();

let database: { url: string; drop: () => Promise<void> };
let pool: pg.Pool;

beforeEach(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 3 });
});
afterEach(async () => {
  await pool?.end();
  await database?.drop();
});

/** The public schema as the catalog describes it, in an order that does not depend on history. */
const schemaOf = async (db: pg.Pool): Promise<Record<string, string[]>> => {
  const lines = async (sql: string): Promise<string[]> =>
    (await db.query<{ line: string }>(sql)).rows.map((row) => row.line).sort();
  return {
    relations: await lines(`
      SELECT c.relname || ' ' || c.relkind::text || ' ' ||
             coalesce(array_to_string(array(SELECT unnest(c.reloptions) ORDER BY 1), ','), '') AS line
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
        AND c.relname <> 'schema_migrations'`),
    columns: await lines(`
      SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
             CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
             coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') ||
             CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END ||
             CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END AS line
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
        AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'schema_migrations'`),
    constraints: await lines(`
      SELECT con.conrelid::regclass::text || ' ' || con.conname || ' ' ||
             pg_get_constraintdef(con.oid) AS line
      FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
      WHERE n.nspname = 'public' AND con.conrelid::regclass::text <> 'schema_migrations'`),
    indexes: await lines(`
      SELECT indexdef AS line FROM pg_indexes
      WHERE schemaname = 'public' AND tablename <> 'schema_migrations'`),
    sequences: await lines(`
      SELECT sequencename || ' ' || data_type || ' ' || increment_by || ' ' || min_value || ' ' ||
             max_value || ' ' || cache_size || ' ' || cycle AS line
      FROM pg_sequences WHERE schemaname = 'public'`),
    functions: await lines(`
      SELECT pg_get_functiondef(p.oid) AS line
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'`),
    triggers: await lines(`
      SELECT pg_get_triggerdef(t.oid) AS line FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT t.tgisinternal`),
    views: await lines(`
      SELECT viewname || ' ' || definition AS line FROM pg_views WHERE schemaname = 'public'`),
  };
};

const tablesOf = async (db: pg.Pool): Promise<string[]> =>
  (
    await db.query<{ name: string }>(
      `SELECT tablename AS name FROM pg_tables
       WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY 1`,
    )
  ).rows.map((row) => row.name);

/** Each table's rows as one digest (and a count), to see that a round trip kept every row. */
const rowsOf = async (db: pg.Pool): Promise<Record<string, { count: number; digest: string }>> => {
  const rows: Record<string, { count: number; digest: string }> = {};
  for (const table of await tablesOf(db)) {
    const result = await db.query<{ count: string; digest: string | null }>(
      `SELECT count(*) AS count,
              md5(string_agg(row_to_json(t)::text, '|' ORDER BY row_to_json(t)::text)) AS digest
       FROM "${table}" t`,
    );
    rows[table] = {
      count: Number(result.rows[0]?.count ?? 0),
      digest: result.rows[0]?.digest ?? '',
    };
  }
  return rows;
};

interface ColumnInfo {
  readonly name: string;
  readonly type: string;
  readonly identityAlways: boolean;
  readonly generated: boolean;
}

let counter = 1;
/** A value of the column's type, different at every call (keys stay unique). */
const valueFor = (table: string, column: ColumnInfo): unknown => {
  counter += 1;
  switch (column.type) {
    case 'uuid':
      return randomUUID();
    case 'bytea':
      return randomBytes(16);
    case 'smallint':
    case 'integer':
    case 'bigint':
      return counter;
    case 'boolean':
      return counter % 2 === 0;
    case 'text':
      return `seed-${counter}`;
    case 'date':
    case 'timestamp with time zone':
    case 'timestamp without time zone':
      return new Date(Date.now() + 86_400_000);
    default:
      throw new Error(
        `the migration test cannot make a value for ${table}.${column.name} (${column.type}): add the type to valueFor()`,
      );
  }
};

/**
 * Gives every empty table three rows, parents before children, with foreign keys pointing at the
 * parents' rows. Generic, so that new tables are covered without editing this test.
 */
const fillEmptyTables = async (db: pg.Pool): Promise<void> => {
  const columns = await db.query<{
    table: string;
    name: string;
    type: string;
    identity: string;
    generated: string;
  }>(`
    SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, NULL) AS type,
           a.attidentity AS identity, a.attgenerated AS generated
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
      AND c.relname <> 'schema_migrations'
    ORDER BY a.attnum`);
  const foreignKeys = await db.query<{
    child: string;
    parent: string;
    cols: string[];
    refs: string[];
  }>(`
    SELECT c.relname AS child, p.relname AS parent,
           array(SELECT attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute ON attrelid = con.conrelid AND attnum = k.n ORDER BY k.i)::text[] AS cols,
           array(SELECT attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute ON attrelid = con.confrelid AND attnum = k.n ORDER BY k.i)::text[] AS refs
    FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class p ON p.oid = con.confrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE con.contype = 'f' AND n.nspname = 'public'`);
  const tables = await tablesOf(db);
  const byTable = new Map<string, ColumnInfo[]>(tables.map((table) => [table, []]));
  for (const row of columns.rows) {
    byTable.get(row.table)?.push({
      name: row.name,
      type: row.type,
      identityAlways: row.identity === 'a',
      generated: row.generated !== '',
    });
  }
  // Parents first: repeatedly take the tables whose parents are all placed.
  const ordered: string[] = [];
  while (ordered.length < tables.length) {
    const next = tables.find(
      (table) =>
        !ordered.includes(table) &&
        foreignKeys.rows.every(
          (fk) => fk.child !== table || fk.parent === table || ordered.includes(fk.parent),
        ),
    );
    if (next === undefined)
      throw new Error('foreign keys form a cycle; fillEmptyTables cannot order them');
    ordered.push(next);
  }
  for (const table of ordered) {
    const count = await db.query<{ n: string }>(`SELECT count(*) AS n FROM "${table}"`);
    if (Number(count.rows[0]?.n) > 0) continue;
    const fks = foreignKeys.rows.filter((fk) => fk.child === table && fk.parent !== table);
    for (let index = 0; index < 3; index += 1) {
      const values = new Map<string, unknown>();
      for (const fk of fks) {
        const parent = await db.query<Record<string, unknown>>(
          `SELECT ${fk.refs.map((ref) => `"${ref}"`).join(', ')} FROM "${fk.parent}"
           ORDER BY 1 OFFSET ${index} LIMIT 1`,
        );
        const row = parent.rows[0];
        if (row === undefined) throw new Error(`${fk.parent} has fewer rows than ${table} needs`);
        fk.cols.forEach((col, position) => values.set(col, row[fk.refs[position] as string]));
      }
      const insertable = (byTable.get(table) ?? []).filter(
        (column) => !column.identityAlways && !column.generated,
      );
      for (const column of insertable) {
        if (!values.has(column.name)) values.set(column.name, valueFor(table, column));
      }
      const names = [...values.keys()];
      await db.query(
        `INSERT INTO "${table}" (${names.map((name) => `"${name}"`).join(', ')})
         VALUES (${names.map((_, position) => `$${position + 1}`).join(', ')})`,
        [...values.values()],
      );
    }
  }
};

const appliedTags = async (db: pg.Pool): Promise<string[]> =>
  (await db.query<{ tag: string }>('SELECT tag FROM schema_migrations ORDER BY tag')).rows.map(
    (row) => row.tag,
  );

describe('every migration goes back and forward again', () => {
  it('has a way back, written by hand', () => {
    expect(MIGRATIONS.length).toBeGreaterThan(0);
    for (const migration of MIGRATIONS) {
      expect(migration.down, `${migration.tag}.down.sql`).toBeDefined();
      expect(migration.down?.length, `${migration.tag}.down.sql has statements`).toBeGreaterThan(0);
    }
  });

  it('keeps the schema and the rows, on a database holding rows in every table', async () => {
    for (const [index, migration] of MIGRATIONS.entries()) {
      const upTo = MIGRATIONS.slice(0, index + 1);
      await fillEmptyTables(pool);
      const schemaBefore = await schemaOf(pool);
      const rowsBefore = await rowsOf(pool);

      expect(await migrate(pool, upTo)).toEqual([migration.tag]);
      await fillEmptyTables(pool);
      for (const [table, rows] of Object.entries(await rowsOf(pool))) {
        expect(rows.count, `${table} holds rows after ${migration.tag}`).toBeGreaterThan(0);
      }
      const schemaAfter = await schemaOf(pool);
      const rowsAfter = await rowsOf(pool);

      const declaresLoss = migration.dataLoss !== undefined;
      expect(await rollback(pool, { allowDataLoss: declaresLoss }, upTo)).toEqual([migration.tag]);
      expect(await schemaOf(pool), `schema after rolling back ${migration.tag}`).toEqual(
        schemaBefore,
      );
      if (!declaresLoss) {
        expect(await rowsOf(pool), `rows after rolling back ${migration.tag}`).toEqual(rowsBefore);
        // A table the way back drops with rows in it loses them: that must be declared.
        const dropped = Object.keys(rowsAfter).filter((table) => !(table in rowsBefore));
        expect(dropped, `${migration.tag}.down.sql drops tables without -- data-loss:`).toEqual([]);
      }

      expect(await migrate(pool, upTo)).toEqual([migration.tag]);
      expect(await schemaOf(pool), `schema after applying ${migration.tag} again`).toEqual(
        schemaAfter,
      );
      if (!declaresLoss) {
        const counts = (rows: Record<string, { count: number }>) =>
          Object.fromEntries(Object.entries(rows).map(([table, { count }]) => [table, count]));
        expect(counts(await rowsOf(pool)), `rows after applying ${migration.tag} again`).toEqual(
          counts(rowsAfter),
        );
      }
    }
    expect(await appliedTags(pool)).toEqual(MIGRATIONS.map((migration) => migration.tag));
  });
});

describe('rolling back', () => {
  const fake = (tag: string, down: string[] | undefined, dataLoss?: string): Migration => ({
    tag,
    statements: [`CREATE TABLE "${tag}" (id integer)`],
    down,
    dataLoss,
  });

  it('undoes only the last migration by default, and back to a named one with `to`', async () => {
    const migrations = [
      fake('a1', ['DROP TABLE "a1"']),
      fake('a2', ['DROP TABLE "a2"']),
      fake('a3', ['DROP TABLE "a3"']),
    ];
    await migrate(pool, migrations);
    expect(await rollback(pool, {}, migrations)).toEqual(['a3']);
    expect(await appliedTags(pool)).toEqual(['a1', 'a2']);
    await migrate(pool, migrations);
    expect(await rollback(pool, { to: 'a1' }, migrations)).toEqual(['a3', 'a2']);
    expect(await tablesOf(pool)).toEqual(['a1']);
    await expect(rollback(pool, { to: 'a9' }, migrations)).rejects.toThrow(
      /a9 is not applied to this database; applied: a1/,
    );
  });

  it('refuses, changing nothing, a way back that loses data unless told, or one that is missing', async () => {
    const migrations = [
      fake('b1', undefined),
      fake('b2', ['DROP TABLE "b2"'], 'the rows of b2'),
      fake('b3', ['DROP TABLE "b3"']),
    ];
    await migrate(pool, migrations);
    await expect(rollback(pool, { to: 'b1' }, migrations)).rejects.toThrow(RollbackRefusedError);
    await expect(rollback(pool, { to: 'b1' }, migrations)).rejects.toThrow(
      /rolling back b2 loses data \(the rows of b2\); nothing was rolled back.*--allow-data-loss/,
    );
    expect(await appliedTags(pool)).toEqual(['b1', 'b2', 'b3']);
    expect(await rollback(pool, { to: 'b1', allowDataLoss: true }, migrations)).toEqual([
      'b3',
      'b2',
    ]);
    await expect(rollback(pool, {}, migrations)).rejects.toThrow(
      /b1 has no way back \(b1\.down\.sql is missing\)/,
    );
    expect(await tablesOf(pool)).toEqual(['b1']);
  });

  it('a failing way back leaves that migration applied', async () => {
    const migrations = [fake('c1', ['DROP TABLE "c1"', 'SELECT 1/0'])];
    await migrate(pool, migrations);
    await expect(rollback(pool, {}, migrations)).rejects.toThrow(/rollback of c1 failed/);
    expect(await appliedTags(pool)).toEqual(['c1']);
    expect(await tablesOf(pool)).toEqual(['c1']);
  });

  it('waits for the advisory lock that migrations take', async () => {
    const migrations = [fake('d1', ['DROP TABLE "d1"'])];
    await migrate(pool, migrations);
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(7451203311)');
      const pending = rollback(pool, {}, migrations);
      // The rollback's connection is seen waiting on the advisory lock, and has changed nothing.
      await expect
        .poll(async () => {
          const waiting = await holder.query(
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`,
          );
          return (waiting.rows[0] as { n: number }).n;
        })
        .toBe(1);
      expect(await appliedTags(pool)).toEqual(['d1']);
      await holder.query('SELECT pg_advisory_unlock(7451203311)');
      expect(await pending).toEqual(['d1']);
    } finally {
      await holder.end();
    }
  });
});

describe('a database migrated by a newer relay', () => {
  it('is refused by migrate, rollback and the start-up check, with what to do', async () => {
    await migrate(pool);
    await pool.query(`INSERT INTO schema_migrations (tag) VALUES ('9999_from_the_future')`);
    const last = MIGRATIONS.at(-1)?.tag as string;
    const advice = `unknown migration 9999_from_the_future): run the newer relay, or roll back with its \`npm run migrate -- --down --to ${last}\` first`;
    await expect(migrate(pool)).rejects.toThrow(SchemaTooNewError);
    await expect(migrate(pool)).rejects.toThrow(advice);
    await expect(rollback(pool)).rejects.toThrow(advice);
    await expect(checkSchema(pool)).rejects.toThrow(advice);
  });

  it('is refused by a relay at start, in one line', async () => {
    await migrate(pool);
    await pool.query(`INSERT INTO schema_migrations (tag) VALUES ('9999_from_the_future')`);
    const result = await runServerScript('main.ts', [], {
      DATABASE_URL: database.url,
      PORT: '0',
      LOG_LEVEL: 'warn',
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringContaining(
        'privcomm relay: failed to start: the database schema is newer than this relay',
      ),
    ]);
  });
});

describe('npm run migrate', () => {
  it('applies, rolls back the last one, refuses to lose data unless told, and checks its arguments', async () => {
    const env = { DATABASE_URL: database.url };
    const tags = MIGRATIONS.map((migration) => migration.tag);
    expect(await runServerScript('cli/migrate.ts', [], env)).toMatchObject({
      code: 0,
      stdout: `applied: ${tags.join(', ')}\n`,
    });
    // Later migrations that declare data loss (0002 drops derived counters) need the flag too.
    const lossy = MIGRATIONS.slice(1).some((migration) => migration.dataLoss !== undefined);
    expect(
      await runServerScript(
        'cli/migrate.ts',
        ['--down', '--to', tags[0] as string, ...(lossy ? ['--allow-data-loss'] : [])],
        env,
      ),
    ).toMatchObject({
      code: 0,
      stdout: `rolled back: ${tags.slice(1).reverse().join(', ')}\n`,
    });
    const refused = await runServerScript('cli/migrate.ts', ['--down'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^migrate refused: rolling back 0000_initial loses data .*--allow-data-loss\n$/,
    );
    expect(
      await runServerScript('cli/migrate.ts', ['--down', '--allow-data-loss'], env),
    ).toMatchObject({
      code: 0,
      stdout: 'rolled back: 0000_initial\n',
    });
    expect(await tablesOf(pool)).toEqual([]);
    expect(await runServerScript('cli/migrate.ts', ['--to', 'x'], env)).toMatchObject({
      code: 2,
      stderr:
        'migrate: --to and --allow-data-loss go with --down (see npm run migrate -- --help)\n',
    });
    const unknown = await runServerScript('cli/migrate.ts', ['--sideways'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^migrate: Unknown option '--sideways'/);
  });
});
