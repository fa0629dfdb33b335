import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type { TestRelay } from './relay.ts';

/**
 * Cuts every relay's event listener on the test database (its connection is terminated) and
 * waits until `relay` noticed: until it reconnects and resyncs, no NOTIFY reaches it.
 */
export const cutListeners = async (relay: TestRelay): Promise<void> => {
  await relay.relay.context.database.pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE application_name = 'privcomm-listen' AND datname = current_database()`,
  );
  await expect.poll(() => relay.relay.context.listener.listening, { interval: 5 }).toBe(false);
};

/**
 * Stores an envelope as another instance does: straight to the queue, with no hand-over to this
 * instance's sockets (which learn of it only from the NOTIFY).
 */
export const storeElsewhere = async (
  relay: TestRelay,
  device: { accountId: string; deviceId: number },
  text: string,
): Promise<void> => {
  await relay.relay.context.envelopes.insert([
    {
      id: randomUUID(),
      accountId: device.accountId,
      deviceId: device.deviceId,
      type: 1,
      content: Buffer.from(text),
      urgent: false,
    },
  ]);
};
