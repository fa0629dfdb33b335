import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate, rollback, RollbackRefusedError, SchemaTooNewError } from '../db/migrate.ts';
import { withDatabase } from './database-url.ts';

/** `npm run migrate`: applies pending migrations, or rolls back with --down, and says which. */
const HELP = `Usage: npm run migrate [-- --down [--to TAG] [--allow-data-loss]]

Applies the pending SQL migrations in packages/server/migrations to the relay's database
(DATABASE_URL, or the embedded PostgreSQL in DATA_DIR; stop the relay first in embedded mode).

Options:
  --down              roll back the last applied migration instead
  --to TAG            with --down: roll back every migration applied after TAG (TAG stays)
  --allow-data-loss   with --down: also roll back migrations whose way back loses data
                      (each says what it loses; back up the database first)
  -h, --help          show this help

Safe to run while other instances start: one advisory lock serialises every migration and
rollback. See docs/upgrading.md for upgrading and going back.

Examples:
  npm run migrate
  npm run migrate -- --down
  npm run migrate -- --down --to 0001_envelope_autovacuum`;

const usageError = (message: string): never => {
  process.stderr.write(`migrate: ${message} (see npm run migrate -- --help)\n`);
  process.exit(2);
};

let options: { down?: boolean; to?: string; 'allow-data-loss'?: boolean; help?: boolean };
try {
  options = parseArgs({
    options: {
      down: { type: 'boolean' },
      to: { type: 'string' },
      'allow-data-loss': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (error) {
  usageError((error as Error).message);
  throw error; // unreachable: usageError exits
}

if (options.help === true) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
if (options.down !== true && (options.to !== undefined || options['allow-data-loss'] === true)) {
  usageError('--to and --allow-data-loss go with --down');
}

withDatabase(async (url) => {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    if (options.down === true) {
      const undone = await rollback(pool, {
        to: options.to,
        allowDataLoss: options['allow-data-loss'] === true,
      });
      process.stdout.write(
        undone.length === 0 ? 'nothing to roll back\n' : `rolled back: ${undone.join(', ')}\n`,
      );
    } else {
      const applied = await migrate(pool);
      process.stdout.write(
        applied.length === 0 ? 'database is up to date\n' : `applied: ${applied.join(', ')}\n`,
      );
    }
  } finally {
    await pool.end();
  }
}).catch((error: unknown) => {
  // Refusals are expected answers with their own advice; anything else is a failure.
  const refused = error instanceof RollbackRefusedError || error instanceof SchemaTooNewError;
  process.stderr.write(`migrate ${refused ? 'refused' : 'failed'}: ${(error as Error).message}\n`);
  process.exit(1);
});
