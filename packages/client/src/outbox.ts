import { ClientError, isRetryable } from './errors.ts';
import type { ClientStore, OutboxEntry } from './store.ts';

/**
 * Sends a stored message through the outbox, one-to-one or in a group: the entry is written
 * first and stays after a failure that may pass (unreachable, rate-limited, full queue), for
 * flushOutbox to send again; after one that will not it goes, and the message is marked failed.
 * What a success makes of the message's status is the caller's.
 */
export const sendThroughOutbox = async (
  store: ClientStore,
  entry: OutboxEntry,
  conversation: string,
  send: () => Promise<void>,
): Promise<void> => {
  await store.addOutbox(entry);
  try {
    await send();
  } catch (error) {
    if (error instanceof ClientError && isRetryable(error)) throw error;
    await store.removeOutbox(entry.id);
    await store.updateMessage(conversation, entry.id, { status: 'failed' });
    throw error;
  }
  await store.removeOutbox(entry.id);
};
