import { sql } from 'drizzle-orm';
import type { Envelope } from '@privcomm/wire';
import type { Executor } from './executor.ts';

/**
 * Events between relay instances, over PostgreSQL LISTEN/NOTIFY on one channel. They are only
 * wake-ups and instructions: the envelopes table stays the truth, so an event lost while the
 * listener reconnects costs latency, not messages (every local socket is re-checked on
 * reconnect).
 */
export const EVENTS_CHANNEL = 'privcomm_events';

export type RelayEvent =
  /**
   * New envelopes are stored for a device, up to queue position s: a socket that already sent
   * that far (the instance that stored them hands them over directly) has nothing to fetch.
   */
  | { t: 'queued'; a: string; d: number; s?: number }
  /** An online-only envelope for a device; dropped if no instance holds its socket. */
  | { t: 'online'; a: string; d: number; e: Envelope }
  /** A socket authenticated for a device; older sockets of that device must close. */
  | { t: 'connected'; a: string; d: number; s: number }
  /** A device (or with d = 0, a whole account) was removed: close its sockets. */
  | { t: 'removed'; a: string; d: number }
  /** A provisioning message (base64 c) for address p; dropped if no instance holds that socket. */
  | { t: 'provision'; p: string; c: string };

export const notifyQuery = (event: RelayEvent): { text: string; values: unknown[] } => ({
  text: 'SELECT pg_notify($1, $2)',
  values: [EVENTS_CHANNEL, JSON.stringify(event)],
});

/** Sends an event from inside a transaction: PostgreSQL delivers it only if the commit succeeds. */
export const notifyIn = async (tx: Executor, event: RelayEvent): Promise<void> => {
  await tx.execute(sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${JSON.stringify(event)})`);
};
