import { parseArgs } from 'node:util';
import pino from 'pino';
import { environmentWithDotenv } from '../config.ts';
import { openDatabase } from '../db/database.ts';
import { checkSchema, migrate } from '../db/migrate.ts';
import { formatDiscoveryKey, rotateDiscoveryKeyFiles, rotatedKeys } from '../discovery/keys.ts';
import { createDiscoveryTokensRepository } from '../discovery/tokens.ts';
import { withDatabase } from './database-url.ts';
import { describeFailure } from './failure.ts';

export const DISCOVERY_HELP = `Usage: npm run admin -- discovery rotate-key [--grace-days D] [--force]

Rotates the phone-number discovery key (the relay's OPRF key). The new key evaluates from the
next start; the old one keeps evaluating and matching for D days (default 14) so that clients
find each other while they publish their tokens again under the new key (they do so when they
see the new key version). Tokens under keys older than the old one are deleted.

Embedded mode with the key in SECRETS_DIR: stop the relay, run this, start the relay; the keys in
SECRETS_DIR are rewritten. With DISCOVERY_KEY set (always with DATABASE_URL): the new
DISCOVERY_KEY, DISCOVERY_PREVIOUS_KEY and DISCOVERY_PREVIOUS_KEY_UNTIL are printed: set them on
every instance and restart them.

  --grace-days D  days both keys evaluate (default 14, 1-365)
  --force         rotate although the previous rotation's grace period has not ended (tokens
                  not yet published again under the current key stop matching)`;

const DAY_MS = 86_400_000;

/** `npm run admin -- discovery ...`; resolves with the exit code. */
export const discoveryAdmin = async (args: string[]): Promise<number> => {
  const usage = (message: string): number => {
    process.stderr.write(`${message}\n\n${DISCOVERY_HELP}\n`);
    return 2;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        'grace-days': { type: 'string' },
        force: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    return usage((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${DISCOVERY_HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== 'rotate-key') return usage('unknown command');
  const rawDays = values['grace-days'] ?? '14';
  if (!/^\d{1,3}$/.test(rawDays) || Number(rawDays) < 1 || Number(rawDays) > 365) {
    return usage('--grace-days must be an integer from 1 to 365');
  }
  const until = new Date(Date.now() + Number(rawDays) * DAY_MS);

  try {
    return await withDatabase(async (url, config) => {
      const discovery = config.discovery;
      if (!discovery) {
        process.stderr.write(
          'discovery is off on this relay (DATABASE_URL without DISCOVERY_KEY): set DISCOVERY_KEY=1:$(openssl rand -base64 32) on every instance to turn it on; there is nothing to rotate\n',
        );
        return 1;
      }
      const previous = discovery.keys.previous;
      if (previous && previous.until.getTime() > Date.now() && !values.force) {
        process.stderr.write(
          `the last rotation's grace period runs until ${previous.until.toISOString()}: rotating now would stop tokens not yet published again from matching. Wait, or pass --force\n`,
        );
        return 1;
      }
      // Keys from files (embedded mode without DISCOVERY_KEY) are rotated in place; keys from the
      // environment can only be printed for the operator to set.
      const env = environmentWithDotenv(process.env, process.cwd());
      const inFiles = config.databaseUrl === undefined && (env.DISCOVERY_KEY ?? '').trim() === '';
      const rotated = inFiles
        ? rotateDiscoveryKeyFiles(config.secretsDir, until)
        : rotatedKeys(discovery.keys, until);
      const database = openDatabase(url, 1, pino({ level: 'warn' }));
      let removed: number;
      try {
        if (config.migrateOnStart) await migrate(database.pool);
        else await checkSchema(database.pool);
        // Tokens under keys before the old one can never match again.
        removed = await createDiscoveryTokensRepository(database.db).removeOlderThan(
          discovery.keys.current.version,
        );
      } finally {
        await database.close();
      }
      const summary = `discovery key rotated to version ${rotated.current.version}; version ${discovery.keys.current.version} evaluates until ${until.toISOString()}; ${removed} token(s) under older keys deleted`;
      if (inFiles) {
        process.stdout.write(
          `${summary}.\nThe keys are in ${config.secretsDir}: back them up, then start the relay.\n`,
        );
      } else {
        // The operator asked for the keys: stdout only, never a log.
        process.stdout.write(
          [
            `DISCOVERY_KEY=${formatDiscoveryKey(rotated.current)}`,
            `DISCOVERY_PREVIOUS_KEY=${formatDiscoveryKey(discovery.keys.current)}`,
            `DISCOVERY_PREVIOUS_KEY_UNTIL=${until.toISOString()}`,
            '',
          ].join('\n'),
        );
        process.stderr.write(
          `${summary}.\nSet the three variables above on every instance and restart them.\n`,
        );
      }
      return 0;
    });
  } catch (error) {
    process.stderr.write(`admin failed: ${describeFailure(error)}\n`);
    return 1;
  }
};
