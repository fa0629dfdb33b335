import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { openDatabase } from '../db/database.ts';
import { checkSchema, migrate } from '../db/migrate.ts';
import { createInvitesRepository } from '../repositories/accounts.ts';
import { discoveryAdmin } from './admin-discovery.ts';
import { withDatabase } from './database-url.ts';
import { describeFailure } from './failure.ts';

const HELP = `Usage: npm run admin -- invite create [--count N] [--uses N] [--expires-days D]

Creates invite codes for REGISTRATION=invite and prints one per line. The relay stores only a
SHA-256 of each code, so they cannot be shown again: hand them out now.

  --count N         how many codes to create (default 1, at most 100)
  --uses N          registrations each code allows (default 1, at most 1000)
  --expires-days D  days until the codes expire (default 7; 0 = never)

Also: npm run admin -- discovery rotate-key (see npm run admin -- discovery --help)`;

// `discovery ...` has its own options and help (admin-discovery.ts).
if (process.argv[2] === 'discovery') process.exit(await discoveryAdmin(process.argv.slice(3)));

const fail = (message: string): never => {
  process.stderr.write(`${message}\n\n${HELP}\n`);
  process.exit(2);
};

const integer = (
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
) => {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    return fail(`--${name} must be an integer from ${min} to ${max}`);
  }
  return Number(raw);
};

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        count: { type: 'string' },
        uses: { type: 'string' },
        'expires-days': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    return fail((error as Error).message);
  }
})();

if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
if (positionals[0] !== 'invite' || positionals[1] !== 'create' || positionals.length !== 2) {
  fail('unknown command');
}
const count = integer(values.count, 1, 1, 100, 'count');
const uses = integer(values.uses, 1, 1, 1000, 'uses');
const days = integer(values['expires-days'], 7, 0, 3650, 'expires-days');

withDatabase(async (url, config) => {
  const database = openDatabase(url, 1, pino({ level: 'warn' }));
  try {
    // A fresh DATA_DIR has no tables yet: bring the schema up to date as the relay's start would.
    if (config.migrateOnStart) await migrate(database.pool);
    else await checkSchema(database.pool);
    const invites = createInvitesRepository(database.db);
    const expiresAt = days === 0 ? null : new Date(Date.now() + days * 86_400_000);
    for (let i = 0; i < count; i += 1) {
      const code = randomBytes(16).toString('base64url');
      await invites.create(code, uses, expiresAt);
      process.stdout.write(`${code}\n`);
    }
  } finally {
    await database.close();
  }
}).catch((error: unknown) => {
  process.stderr.write(`admin failed: ${describeFailure(error)}\n`);
  process.exit(1);
});
