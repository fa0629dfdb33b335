import { parseArgs } from 'node:util';
import pino from 'pino';
import { openDatabase } from '../db/database.ts';
import { checkSchema, migrate } from '../db/migrate.ts';
import { discoveryAdmin } from './admin-discovery.ts';
import { checkDeployment } from './admin/check.ts';
import type { AdminCommand, Options } from './admin/command.ts';
import { createInvites, listInvites, revokeInvite } from './admin/invites.ts';
import { purgeExpired } from './admin/purge.ts';
import { showStatistics } from './admin/stats.ts';
import { withDatabase } from './database-url.ts';
import { describeFailure } from './failure.ts';

const HELP = `Usage: npm run admin -- COMMAND [OPTIONS]

Operator commands, on the relay's database (DATABASE_URL, or the embedded PostgreSQL in DATA_DIR:
stop the relay first in embedded mode). They read the same configuration as the relay.

  invite create [--count N] [--uses N] [--expires-days D]
                    create invite codes for REGISTRATION=invite and print one per line. The
                    relay stores only a SHA-256 of each code, so they cannot be shown again.
                    --count: how many (default 1, at most 100); --uses: registrations each
                    allows (default 1, at most 1000); --expires-days: default 7, 0 = never
  invite list       the codes that can still be used: id, uses left, expiry, creation date
  invite revoke ID|CODE
                    delete a code, named by its id from \`invite list\` (or a unique start of
                    it) or by the code itself
  stats             counts over everyone: accounts, devices, devices seen recently, queued
                    envelopes, usable invites, database size; never an id or a row
  purge             remove expired data now (what the relay does every JANITOR_INTERVAL_MS)
  check             check the configuration, the database (reachable, PostgreSQL 15 or newer,
                    schema), and that each UDP TURN server answers; changes nothing; exit 1
                    if a check fails
  discovery rotate-key
                    rotate the phone-number discovery key (see npm run admin -- discovery --help)

  --json            invite list and stats: JSON lines instead of text
  -h, --help        show this help`;

// `discovery ...` has its own options and help (admin-discovery.ts).
if (process.argv[2] === 'discovery') process.exit(await discoveryAdmin(process.argv.slice(3)));

/** A command's refusal of its arguments (no such code, ambiguous id): exit 2, no help. */
class Refusal extends Error {}

interface Command {
  readonly run: AdminCommand;
  /** Brings the schema up to date first (as the relay's start would), or checks it. */
  readonly needsSchema: boolean;
  /** How many arguments follow the command's name. */
  readonly arguments?: number;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  'invite create': { run: createInvites, needsSchema: true },
  'invite list': { run: listInvites, needsSchema: true },
  'invite revoke': { run: revokeInvite, needsSchema: true, arguments: 1 },
  stats: { run: showStatistics, needsSchema: true },
  purge: { run: purgeExpired, needsSchema: true },
  check: { run: checkDeployment, needsSchema: false },
};

/** A usage error: what is wrong, then the help; exit 2. */
const usage = (message: string): never => {
  process.stderr.write(`${message}\n\n${HELP}\n`);
  process.exit(2);
};

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        count: { type: 'string' },
        uses: { type: 'string' },
        'expires-days': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    return usage((error as Error).message);
  }
})();

if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}

// Two-word commands first (invite create), then one-word ones (stats).
const twoWords = positionals.slice(0, 2).join(' ');
const name = COMMANDS[twoWords] ? twoWords : (positionals[0] ?? '');
const command =
  COMMANDS[name] ?? usage(positionals.length === 0 ? 'no command' : 'unknown command');
const args = positionals.slice(name.split(' ').length);
if (args.length !== (command.arguments ?? 0)) {
  usage(`${name} takes ${command.arguments ?? 'no'} argument${command.arguments === 1 ? '' : 's'}`);
}

const options: Options = {
  integer: (option, fallback, min, max) => {
    const raw = (values as Record<string, string | undefined>)[option];
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      return usage(`--${option} must be an integer from ${min} to ${max}`);
    }
    return Number(raw);
  },
  json: values.json === true,
};

withDatabase(async (url, config) => {
  // Two connections: purge holds the janitor's lock on one while it deletes on the other.
  const database = openDatabase(url, 2, pino({ level: 'warn' }));
  try {
    if (command.needsSchema) {
      // A fresh DATA_DIR has no tables yet: bring the schema up to date as the relay's start would.
      if (config.migrateOnStart) await migrate(database.pool);
      else await checkSchema(database.pool);
    }
    return await command.run({
      database,
      config,
      url,
      positionals: args,
      options,
      out: (line) => process.stdout.write(`${line}\n`),
      fail: (message) => {
        throw new Refusal(message);
      },
    });
  } finally {
    await database.close();
  }
}).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof Refusal) {
      process.stderr.write(`admin: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`admin failed: ${describeFailure(error)}\n`);
    process.exit(1);
  },
);
