import { createEnvelopesRepository } from '../../repositories/envelopes.ts';
import { createMetrics } from '../../metrics.ts';
import { runJanitor } from '../../services/janitor.ts';
import type { AdminCommand } from './command.ts';

/**
 * `purge`: what the relay's janitor does every JANITOR_INTERVAL_MS, now: expired envelopes,
 * used login challenges, link tokens, and invite codes expired or used up.
 */
export const purgeExpired: AdminCommand = async ({ database, config, out }) => {
  const envelopes = createEnvelopesRepository(database.pool, config.envelopeTtlDays, config.queue);
  const removed = await runJanitor(database, envelopes, createMetrics());
  out(
    `removed ${removed} expired rows (envelopes past ENVELOPE_TTL_DAYS, used challenges, link tokens, invite codes expired or used up); PostgreSQL reuses their space after its autovacuum`,
  );
  return 0;
};
