import type { Logger } from 'pino';
import type { Database } from '../db/database.ts';
import { safeError } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { deleteExpiredCredentials } from '../repositories/challenges.ts';
import type { EnvelopesRepository } from '../repositories/envelopes.ts';

const LOCK_KEY = 7_451_203_312;
const BATCH = 5_000;

/**
 * Removes expired envelopes (30 days by default), challenges, link tokens and used-up invites.
 * Deletes go in small batches so no transaction holds many locks or bloats at once; an advisory
 * lock lets only one instance at a time do the work.
 */
export const runJanitor = async (
  database: Database,
  envelopes: EnvelopesRepository,
  metrics: Metrics,
): Promise<number> => {
  const client = await database.pool.connect();
  try {
    const locked = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [
      LOCK_KEY,
    ]);
    if (!locked.rows[0]?.ok) return 0;
    try {
      let removed = 0;
      for (;;) {
        const count = await envelopes.deleteExpired(BATCH);
        removed += count;
        metrics.envelopesExpired.inc(count);
        if (count < BATCH) break;
      }
      return removed + (await deleteExpiredCredentials(database.db));
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
    }
  } finally {
    client.release();
  }
};

export const startJanitor = (
  intervalMs: number,
  run: () => Promise<number>,
  log: Logger,
): (() => void) => {
  const timer = setInterval(() => {
    run().catch((error: unknown) => log.warn({ err: safeError(error) }, 'janitor run failed'));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
};
