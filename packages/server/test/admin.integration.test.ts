import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { runServerScript } from './support/relay.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const admin = (args: string[], env: Record<string, string>) =>
  runServerScript('cli/admin.ts', args, env);

const database = async (): Promise<string> => {
  const created = await createTestDatabase();
  cleanup.push(() => created.drop());
  return created.url;
};

const sql = async (url: string, statement: string): Promise<void> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(statement);
  await client.end();
};

describe('npm run admin', () => {
  it('works on a fresh DATA_DIR without `npm run migrate` first', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-admin-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const result = await admin(['invite', 'create'], { DATA_DIR: dataDir, JWT_SECRET: '' });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^[A-Za-z0-9_-]{22}\n$/);
  });

  it('says to run `npm run migrate` when it may not migrate itself', async () => {
    const url = await database();
    const result = await admin(['invite', 'create'], {
      DATABASE_URL: url,
      MIGRATE_ON_START: 'false',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^admin failed: the database lacks migration 0000_initial\b.*: run `npm run migrate` \(MIGRATE_ON_START=false\)\n$/,
    );
  });

  it('never prints a failed query or its parameters', async () => {
    const url = await database();
    expect((await runServerScript('cli/migrate.ts', [], { DATABASE_URL: url })).code).toBe(0);
    await sql(url, 'DROP TABLE invite_codes');
    const result = await admin(['invite', 'create', '--uses', '987'], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'admin failed: database error 42P01 (a table is missing: run `npm run migrate`)\n',
    );
    expect(result.stdout).toBe('');
  });
});
