/**
 * Creates the relay's benchmark accounts (relay-accounts.ts) in a process of its own:
 *
 *   node make-accounts.mjs DATABASE_URL COUNT FILE   (compiled by the orchestrator, lib/compile.ts)
 *
 * The orchestrator runs it with a deadline. Made in the orchestrator itself, the step hung twice
 * in 10 runs at a load of 10 (its main thread waiting on a futex, no CPU used; not understood): a
 * process that hangs can be killed and the step run again, which an in-process hang would not
 * allow. The hang was Node's: a JWK export of a generated key can deadlock it (gdb, 2026-12-06),
 * and the keys were exported as JWK; they no longer are (lib/relay-accounts.ts).
 */
import { createRelayAccounts } from './lib/relay-accounts.ts';

// A line once loaded and after every step: the orchestrator kills a process silent for 15 s.
process.stdout.write('loaded\n');
const [databaseUrl, count, file] = process.argv.slice(2);
if (!databaseUrl || !count || !file) throw new Error('usage: make-accounts.ts URL COUNT FILE');
await createRelayAccounts(databaseUrl, Number(count), file, (step) =>
  process.stdout.write(`${step}\n`),
);
