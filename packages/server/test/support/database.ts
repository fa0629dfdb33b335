import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/** A fresh database on the run's PostgreSQL server, dropped by the returned function. */
export const createTestDatabase = async (): Promise<{ url: string; drop: () => Promise<void> }> => {
  const adminUrl = inject('adminDatabaseUrl');
  const name = `privcomm_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
};

/**
 * Every row of every table as text, the way a database dump would show it (bytea as hex):
 * what a thief of the database would hold.
 */
export const dumpDatabase = async (url: string): Promise<string> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
       WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`,
    );
    const parts: string[] = [];
    for (const { table_name: table } of tables.rows) {
      const rows = await client.query(`SELECT row_to_json(t)::text AS row FROM "${table}" t`);
      parts.push(`-- ${table}`, ...rows.rows.map((row: { row: string }) => row.row));
    }
    return parts.join('\n');
  } finally {
    await client.end();
  }
};
