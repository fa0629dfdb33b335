import {
  ClientError,
  receiptCounts,
  type PrivcommClient,
  type StoredMessage,
} from '@privcomm/client';
import { CliError, UsageError } from '../errors.ts';
import { groupSentJson, type Names } from '../output.ts';
import type { RunContext } from '../run-context.ts';

/**
 * The conversation that send, history and retry act on: a contact, or with --group a group.
 * Those commands take one path for both; everything in which a group differs from a contact is
 * in the two makers at the end of this file.
 */
export interface Conversation {
  readonly id: string;
  /** What must hold, or be done, before a new text goes out. */
  beforeSend(): Promise<void>;
  send(text: string): Promise<StoredMessage>;
  /** The text that `send` kept in the outbox when the relay could not be reached. */
  keptAfterUnreachable(text: string): Promise<StoredMessage | undefined>;
  /** Prints the sent message; then warns of, or fails on, what a sender must act on. */
  reportSent(message: StoredMessage): Promise<void>;
  /** Said (not in --json) when the conversation has no messages. */
  noMessages(names: Names): string;
  markRead(): Promise<number>;
  /** The error for members a retried message still missed. */
  retryFailure(message: StoredMessage, names: Names): CliError | undefined;
}

/** Names a contact or a group; both or neither is a usage error, worded by each command. */
export type ConversationName = { contact: string } | { group: string };

export const nameConversation = (
  contact: string | undefined,
  group: string | undefined,
  usage: { both: string; neither: string },
): ConversationName => {
  if (group !== undefined) {
    if (contact !== undefined) throw new UsageError(usage.both);
    return { group };
  }
  if (contact === undefined) throw new UsageError(usage.neither);
  return { contact };
};

/**
 * send's and retry's two optional arguments, [contact, value]: with --group the group takes the
 * contact's place, so the value comes first and a second argument is one too many.
 */
export const contactAndValue = (
  first: string | undefined,
  second: string | undefined,
  group: string | undefined,
): [contact: string | undefined, value: string | undefined] =>
  group === undefined ? [first, second] : [second, first];

export const isUnreachable = (error: unknown): boolean =>
  error instanceof ClientError && error.code === 'RELAY_UNREACHABLE';

export const openConversation = (
  ctx: RunContext,
  client: PrivcommClient,
  self: string,
  name: ConversationName,
): Promise<Conversation> =>
  'group' in name
    ? groupConversation(ctx, client, self, name.group)
    : contactConversation(ctx, client, self, name.contact);

const contactConversation = async (
  ctx: RunContext,
  client: PrivcommClient,
  self: string,
  contact: string,
): Promise<Conversation> => {
  const to = await client.resolve(contact);
  return {
    id: to,
    beforeSend: async () => {
      if (to === self) throw new CliError('you cannot send a message to yourself', 'SELF');
      await flushEarlierSends(ctx, client);
    },
    send: (text) => client.sendText(to, text),
    keptAfterUnreachable: (text) => keptText(client, to, text),
    reportSent: async (message) => {
      const names = await ctx.names(client, self);
      ctx.out.result(
        {
          type: 'sent',
          id: message.id,
          to,
          ...(names.contact(to) === undefined ? {} : { contact: names.contact(to) }),
          sentAt: message.sentAt,
          status: message.status,
        },
        `Sent to ${names.label(to)} (id ${message.id}).`,
      );
      await ctx.warnIdentity(client, to, names.label(to));
    },
    noMessages: (names) => `No messages with ${names.label(to)}.`,
    markRead: () => client.markRead(to),
    retryFailure: () => undefined,
  };
};

const groupConversation = async (
  ctx: RunContext,
  client: PrivcommClient,
  self: string,
  group: string,
): Promise<Conversation> => {
  const groupId = await client.resolveGroup(group);
  return {
    id: groupId,
    // A group has no self to refuse.
    beforeSend: () => flushEarlierSends(ctx, client),
    send: (text) => client.sendGroupText(groupId, text),
    keptAfterUnreachable: (text) => keptText(client, groupId, text),
    reportSent: async (message) => {
      const info = await client.groupInfo(groupId);
      const { members } = receiptCounts(message);
      ctx.out.result(
        groupSentJson(message, info.title),
        `Sent to group ${info.title} (${members} other member${members === 1 ? '' : 's'}, id ${message.id}).`,
      );
      const failure = groupSendFailure(message, await ctx.names(client, self), info.title);
      if (failure) throw failure;
    },
    noMessages: () => 'No messages in that group.',
    markRead: () => client.markGroupRead(groupId),
    retryFailure: (message, names) => groupSendFailure(message, names, group),
  };
};

/**
 * Sends what earlier sends kept in the outbox, so that a new text never overtakes them (in a
 * contact's or a group's conversation, which the outbox holds together).
 */
const flushEarlierSends = async (ctx: RunContext, client: PrivcommClient): Promise<void> => {
  try {
    await client.flushOutbox();
  } catch (error) {
    // Unreachable: the send meets the same, and its one error line says it all.
    if (!isUnreachable(error))
      ctx.out.warn(`earlier messages are still waiting to be sent: ${ctx.describe(error).message}`);
  }
};

/** The newest text `send` stored and kept in the outbox: its id is what a retry names. */
const keptText = async (
  client: PrivcommClient,
  conversation: string,
  text: string,
): Promise<StoredMessage | undefined> =>
  (await client.history(conversation)).findLast(
    (m) => m.direction === 'out' && m.status === 'sending' && m.text === text,
  );

/**
 * A group text that left members out (a verified safety number that changed): the error that
 * says who, and how to send it to them once the change is accepted (the others have it).
 */
const groupSendFailure = (
  message: StoredMessage,
  names: Names,
  group: string,
): CliError | undefined => {
  const { failed, members } = receiptCounts(message);
  if (failed.length === 0) return undefined;
  const who = failed.map((m) => names.label(m)).join(', ');
  const first = failed[0] as string;
  return new CliError(
    `not sent to ${who} (${failed.length} of ${members} members): the safety number with ${who} changed since you verified it. Compare it ("privcomm safety-number ${names.label(first)}"), accept it ("privcomm accept-identity ${names.label(first)}"), then send it to them with "privcomm retry --group ${group} ${message.id}"`,
    'UNTRUSTED_IDENTITY',
  );
};
