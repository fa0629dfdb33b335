/**
 * Receipts for group messages. A member device that gets a group text sends its delivery receipt
 * (and, once read, its read receipt) pairwise to the text's author, as for a one-to-one message;
 * the group id travels inside the encryption, so the relay sees an ordinary pairwise message.
 *
 * The author keeps one state per member account in the message (`recipients`), not one per
 * device: a member with two devices counts once, as soon as either device has it (or read it),
 * as Signal shows it. The message's own status follows the slowest member: "delivered" once every
 * member has it, "read" once every member read it, "failed" while a member was left out.
 */

import type { MessageStatus, RecipientStatus, StoredMessage } from '../store.ts';

export type Recipients = Readonly<Record<string, RecipientStatus>>;

const rank: Record<RecipientStatus, number> = { failed: 0, sent: 1, delivered: 2, read: 3 };

/**
 * The recipients after a send: the members it reached are "sent" (or further, after an earlier
 * send), those it left out "failed" (unless an earlier send reached them).
 */
export const recipientsAfterSend = (
  current: Recipients | undefined,
  reached: readonly string[],
  missed: readonly string[],
): Recipients => {
  const next: Record<string, RecipientStatus> = { ...current };
  for (const member of reached) if ((next[member] ?? 'failed') === 'failed') next[member] = 'sent';
  for (const member of missed) next[member] ??= 'failed';
  return next;
};

/**
 * The recipients with a member's receipt; undefined when it changes nothing: the member is not
 * among the message's recipients (only they may acknowledge it), or the state is already as far
 * (a late delivery receipt does not undo "read").
 */
export const recipientsWithReceipt = (
  current: Recipients | undefined,
  member: string,
  receipt: 'delivered' | 'read',
): Recipients | undefined => {
  const status = current?.[member];
  if (status === undefined || rank[receipt] <= rank[status]) return undefined;
  return { ...current, [member]: receipt };
};

/** The message's status: "failed" if a member was left out, else the least advanced member's. */
export const groupMessageStatus = (
  recipients: Recipients,
  otherwise: MessageStatus,
): MessageStatus => {
  const states = Object.values(recipients);
  if (states.length === 0) return otherwise;
  return states.reduce((slowest, state) => (rank[state] < rank[slowest] ? state : slowest));
};

/** The members the message went to, and how many of them have it and read it. */
export interface ReceiptCounts {
  readonly members: number;
  /** Members with the message (delivered or read). */
  readonly delivered: number;
  readonly read: number;
  /** Members the send left out (retryMessage sends to them). */
  readonly failed: readonly string[];
}

export const receiptCounts = (message: Pick<StoredMessage, 'recipients'>): ReceiptCounts => {
  const entries = Object.entries(message.recipients ?? {});
  return {
    members: entries.length,
    delivered: entries.filter(([, s]) => rank[s] >= rank.delivered).length,
    read: entries.filter(([, s]) => s === 'read').length,
    failed: entries.filter(([, s]) => s === 'failed').map(([member]) => member),
  };
};
