import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS_DIR, readMigrations } from '../db/migrate.ts';

/**
 * `npm run migration:generate -- NAME [--custom]`: drizzle-kit writes the way forward (the diff of
 * schema.ts against the snapshots, or an empty file with --custom); this writes, beside each new
 * migration, a down file that refuses to run until someone writes the way back. The migration
 * round-trip test then fails until it is written, so no migration lands without one.
 */
const HELP = `Usage: npm run migration:generate -- NAME [--custom]

Writes packages/server/migrations/NNNN_NAME.sql from the difference between
packages/server/src/db/schema.ts and the last snapshot (drizzle-kit), or an empty file to write by
hand with --custom, and NNNN_NAME.down.sql for its way back, which you must write: until then it
fails on purpose, and so does the migration test (see CONTRIBUTING.md, "Adding a migration").`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
const names = args.filter((arg) => !arg.startsWith('-'));
const flags = args.filter((arg) => arg.startsWith('-'));
if (names.length !== 1 || !/^[a-z0-9_]{1,60}$/.test(names[0] as string)) {
  process.stderr.write(
    'migration:generate: give one NAME of lower-case letters, digits and _ (see npm run migration:generate -- --help)\n',
  );
  process.exit(2);
}
if (flags.some((flag) => flag !== '--custom')) {
  process.stderr.write(`migration:generate: unknown option ${flags.join(' ')}; only --custom\n`);
  process.exit(2);
}

const before = new Set(readMigrations().map((migration) => migration.tag));
const serverRoot = fileURLToPath(new URL('../..', import.meta.url));
const drizzle = spawnSync(
  'npx',
  ['--no-install', 'drizzle-kit', 'generate', '--name', names[0] as string, ...flags],
  { cwd: serverRoot, stdio: 'inherit' },
);
if (drizzle.status !== 0) process.exit(drizzle.status ?? 1);

for (const { tag } of readMigrations().filter((migration) => !before.has(migration.tag))) {
  const downFile = path.join(MIGRATIONS_DIR, `${tag}.down.sql`);
  if (existsSync(downFile)) continue;
  writeFileSync(
    downFile,
    `-- The way back from ${tag}: statements that undo it, newest change first, separated by
-- breakpoint lines as in ${tag}.sql. If undoing it loses data, say what on a line of its own:
-- -- data-loss: <what is lost>
DO $$ BEGIN RAISE EXCEPTION 'the way back from ${tag} is not written yet (${tag}.down.sql)'; END $$;
`,
  );
  process.stdout.write(`wrote ${path.relative(process.cwd(), downFile)}: write the way back\n`);
}
