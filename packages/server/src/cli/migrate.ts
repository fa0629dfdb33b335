import pg from 'pg';
import { migrate } from '../db/migrate.ts';
import { withDatabase } from './database-url.ts';

/** `npm run migrate`: applies pending migrations and says which. */
const HELP = `Usage: npm run migrate

Applies the pending SQL migrations in packages/server/migrations to the relay's database
(DATABASE_URL, or the embedded PostgreSQL in DATA_DIR). Safe to run while other instances start:
an advisory lock serialises migrations.`;

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}

withDatabase(async (url) => {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    const applied = await migrate(pool);
    process.stdout.write(
      applied.length === 0 ? 'database is up to date\n' : `applied: ${applied.join(', ')}\n`,
    );
  } finally {
    await pool.end();
  }
}).catch((error: unknown) => {
  process.stderr.write(`migrate failed: ${(error as Error).message}\n`);
  process.exit(1);
});
