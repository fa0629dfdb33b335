/**
 * Creates the relay's benchmark accounts (relay-accounts.ts) in a process of its own:
 *
 *   node --import tsx bench/make-accounts.ts DATABASE_URL COUNT FILE
 *
 * The orchestrator runs it with a deadline. Made in the orchestrator itself, the first Ed25519
 * key generation hung twice in 10 runs at a load of 10 (its main thread waiting on a futex, no
 * CPU used, while tsx's loader thread shares OpenSSL): a process that hangs is killed and the step
 * run again, which an in-process hang would not allow.
 */
import { createRelayAccounts } from './lib/relay-accounts.ts';

const [databaseUrl, count, file] = process.argv.slice(2);
if (!databaseUrl || !count || !file) throw new Error('usage: make-accounts.ts URL COUNT FILE');
await createRelayAccounts(databaseUrl, Number(count), file);
