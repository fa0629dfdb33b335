import type { Command } from 'commander';
import { ClientError, receiptCounts, type StoredMessage } from '@privcomm/client';
import { CliError, UsageError } from '../errors.ts';
import { groupSentJson, messageJson, messageText, Names } from '../output.ts';
import type { RunContext } from '../run-context.ts';
import { closedByRelay, examples, parseSeconds, readAll } from './common.ts';
const isUnreachable = (error: unknown): boolean =>
  error instanceof ClientError && error.code === 'RELAY_UNREACHABLE';

const MAX_TIMER_SECONDS = 365 * 24 * 60 * 60;

/** `send --group`: a text to a group, with the same stdin and output rules as a contact's. */
const sendToGroup = async (
  ctx: RunContext,
  command: Command,
  group: string,
  textArg: string | undefined,
): Promise<void> => {
  let text = textArg;
  if (text === undefined || text === '-') {
    if (ctx.io.stdin.isTTY) ctx.out.status('Type the message, then Ctrl-D:');
    text = (await readAll(ctx.io.stdin)).replace(/\r?\n$/, '');
  }
  if (text.trim() === '') throw new UsageError('the message is empty; nothing was sent');
  const { client, self } = await ctx.openAccount(command);
  let message: StoredMessage;
  try {
    message = await client.sendGroupText(group, text);
  } catch (error) {
    if (!isUnreachable(error)) throw error;
    throw new CliError(
      `${(error as Error).message}. The message is kept in this profile and will be sent by the next "privcomm send", "receive" or "listen" that reaches the relay: do not send it again`,
      'RELAY_UNREACHABLE',
    );
  }
  const info = await client.groupInfo(message.conversation);
  const { members } = receiptCounts(message);
  ctx.out.result(
    groupSentJson(message, info.title),
    `Sent to group ${info.title} (${members} other member${members === 1 ? '' : 's'}, id ${message.id}).`,
  );
  const failure = groupSendFailure(message, await ctx.names(client, self.accountId), info.title);
  if (failure) throw failure;
};

/**
 * A group text that left members out (a verified safety number that changed): the error that
 * says who, and how to send it to them once the change is accepted (the others have it).
 */
const groupSendFailure = (
  message: StoredMessage,
  names: Names,
  title: string,
): CliError | undefined => {
  const { failed, members } = receiptCounts(message);
  if (failed.length === 0) return undefined;
  const who = failed.map((m) => names.label(m)).join(', ');
  const first = failed[0] as string;
  return new CliError(
    `not sent to ${who} (${failed.length} of ${members} members): the safety number with ${who} changed since you verified it. Compare it ("privcomm safety-number ${names.label(first)}"), accept it ("privcomm accept-identity ${names.label(first)}"), then send it to them with "privcomm retry --group ${title} ${message.id}"`,
    'UNTRUSTED_IDENTITY',
  );
};

/** What `send` and `retry` get: two optional arguments (the first a contact), or --group. */
type ContactOrGroupArgs = [
  first: string | undefined,
  second: string | undefined,
  options: { group?: string },
  command: Command,
];

/** After `history`: received messages marked read, read receipts sent (a failure only warns). */
const markRead = async (ctx: RunContext, mark: () => Promise<number>): Promise<void> => {
  try {
    await mark();
  } catch (error) {
    ctx.out.warn(`could not send read receipts: ${ctx.describe(error).message}`);
  }
};

/** send, receive, history, typing, delete and disappear: one conversation at a time. */
export const addMessageCommands = (program: Command, ctx: RunContext): void => {
  program
    .command('send')
    .summary('send a text message')
    .description(
      'send a text message to a contact, or with --group to a group (from standard input when TEXT is omitted or "-").\n' +
        'A group message is encrypted once with your sender key and uploaded once for every member device.',
    )
    .argument('[contact]', 'a contact name or an account id (not with --group)')
    .argument('[text]', 'the message; omit it or give "-" to read standard input')
    .option('--group <group>', 'send to a group (its title or id) instead of a contact')
    .addHelpText(
      'after',
      examples(
        'privcomm send bob "see you at 8"',
        'echo "build finished" | privcomm send bob',
        'privcomm send --group Family "dinner at 8"',
      ),
    )
    .action(async (...[first, second, options, command]: ContactOrGroupArgs) => {
      ctx.globals(command);
      if (options.group !== undefined) {
        if (second !== undefined)
          throw new UsageError('with --group, give only the text (the group replaces the contact)');
        await sendToGroup(ctx, command, options.group, first);
        return;
      }
      if (first === undefined)
        throw new UsageError(`missing required argument 'contact' (see "privcomm send --help")`);
      const contact = first;
      let text = second;
      if (text === undefined || text === '-') {
        if (ctx.io.stdin.isTTY) ctx.out.status('Type the message, then Ctrl-D:');
        text = (await readAll(ctx.io.stdin)).replace(/\r?\n$/, '');
      }
      if (text.trim() === '') throw new UsageError('the message is empty; nothing was sent');
      const { client, self } = await ctx.openAccount(command);
      const to = await client.resolve(contact);
      if (to === self.accountId)
        throw new CliError('you cannot send a message to yourself', 'SELF');
      const names = new Names(self.accountId, await client.contacts());
      try {
        await client.flushOutbox();
      } catch (error) {
        // Unreachable: the send below meets the same, and its one error line says it all.
        if (!isUnreachable(error))
          ctx.out.warn(
            `earlier messages are still waiting to be sent: ${ctx.describe(error).message}`,
          );
      }
      let message: StoredMessage;
      try {
        message = await client.sendText(to, text);
      } catch (error) {
        if (!isUnreachable(error)) throw error;
        // sendText stored it and kept it in the outbox: say so, so that nobody sends it twice.
        const kept = (await client.history(to)).findLast(
          (m) => m.direction === 'out' && m.status === 'sending' && m.text === text,
        );
        throw new CliError(
          `${(error as Error).message}. The message is kept in this profile${kept ? ` (id ${kept.id})` : ''} and will be sent by the next "privcomm send", "receive" or "listen" that reaches the relay: do not send it again`,
          'RELAY_UNREACHABLE',
        );
      }
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
    });

  program
    .command('receive')
    .summary('print what arrived, then exit')
    .description(
      'connect, print incoming messages and events, and exit once the queue is empty and nothing more arrived for a while',
    )
    .option(
      '--timeout <seconds>',
      'seconds to wait for more after the queue is empty',
      parseSeconds(3600, '--timeout'),
      3,
    )
    .addHelpText(
      'after',
      '\nMessages are stored in the profile before the relay is told to delete them.' +
        examples('privcomm receive', 'privcomm receive --timeout 10 --json'),
    )
    .action(async (options: { timeout: number }, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      let finished = false;
      let queueEmpty = false;
      /** Output in the order of the events, finished before exiting. */
      let printing: Promise<void> = Promise.resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      let unsubscribe: () => unknown = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(resolve, options.timeout * 1000);
        };
        unsubscribe = client.subscribe((event) => {
          if (event.type === 'queue-empty') {
            queueEmpty = true;
            arm();
            return;
          }
          if (event.type === 'disconnected') {
            if (!finished)
              reject(
                closedByRelay(event) ??
                  new CliError(
                    `the connection to the relay was lost (${event.code}${event.reason ? ` ${event.reason}` : ''}); messages already shown are stored, the rest stays queued: run receive again`,
                    'RELAY_UNREACHABLE',
                  ),
              );
            return;
          }
          printing = printing.then(() => ctx.printEvent(client, self.accountId, event));
          if (queueEmpty) arm();
        });
      });
      // Handled below; a socket that closes while connect() is still busy must not count as an
      // unhandled rejection meanwhile.
      done.catch(() => undefined);
      try {
        await client.connect();
        await done;
      } finally {
        finished = true;
        clearTimeout(timer);
      }
      await client.disconnect();
      await printing;
      unsubscribe();
    });

  program
    .command('history')
    .summary('print a conversation (and mark it read)')
    .description(
      'print the conversation with a contact (or with --group a group), oldest first, with the status of each message; marks received messages read and tells the sender (unless --no-read)',
    )
    .argument('[contact]', 'a contact name or an account id (not with --group)')
    .option('--group <group>', "print a group's messages (its title or id)")
    .option('--no-read', 'do not mark messages read nor send read receipts')
    .addHelpText(
      'after',
      examples(
        'privcomm history bob',
        'privcomm history bob --no-read --json',
        'privcomm history --group Family',
      ),
    )
    .action(
      async (
        contactArg: string | undefined,
        options: { read: boolean; group?: string },
        command: Command,
      ) => {
        const { client, self } = await ctx.openAccount(command);
        if (options.group !== undefined) {
          if (contactArg !== undefined)
            throw new UsageError('give either a contact or --group, not both');
          const list = await client.groupHistory(options.group);
          const labels = await ctx.names(client, self.accountId);
          if (list.length === 0 && !ctx.out.json) ctx.out.status('No messages in that group.');
          for (const message of list)
            ctx.out.result(
              messageJson(message, labels),
              messageText(message, labels, { status: true }),
            );
          if (options.read) await markRead(ctx, () => client.markGroupRead(options.group!));
          return;
        }
        if (contactArg === undefined)
          throw new UsageError(
            `missing required argument 'contact' (see "privcomm history --help")`,
          );
        const contact = contactArg;
        const conversation = await client.resolve(contact);
        const list = await client.history(conversation);
        const labels = await ctx.names(client, self.accountId);
        if (list.length === 0 && !ctx.out.json)
          ctx.out.status(`No messages with ${labels.label(conversation)}.`);
        for (const message of list)
          ctx.out.result(
            messageJson(message, labels),
            messageText(message, labels, { status: true }),
          );
        if (options.read) await markRead(ctx, () => client.markRead(conversation));
      },
    );

  program
    .command('retry')
    .summary('send a message that failed again')
    .description(
      'send a message that was not sent again, under its own id (nobody sees it twice): one that failed, or one still waiting in this profile. In a group (--group), a message that reached some members goes only to those it missed (a safety number that changed: accept it first)',
    )
    .argument('[contact]', 'a contact name or an account id (not with --group)')
    .argument('[messageId]', 'the id of a message you sent (see "privcomm history")')
    .option('--group <group>', 'a message in a group (its title or id)')
    .addHelpText(
      'after',
      examples(
        'privcomm retry bob 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d',
        'privcomm retry --group Family 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d',
      ),
    )
    .action(async (...[first, second, options, command]: ContactOrGroupArgs) => {
      const inGroup = options.group !== undefined;
      const messageId = inGroup ? first : second;
      if (messageId === undefined || (inGroup && second !== undefined))
        throw new UsageError(
          inGroup
            ? 'with --group, give only the message id'
            : 'give the contact and the message id (see "privcomm retry --help")',
        );
      const { client, self } = await ctx.openAccount(command);
      const conversation = inGroup
        ? await client.resolveGroup(options.group!)
        : await client.resolve(first!);
      const message = await client.retryMessage(conversation, messageId);
      const labels = await ctx.names(client, self.accountId);
      ctx.out.result(
        { ...messageJson(message, labels), type: 'retried' },
        `Sent again: ${messageText(message, labels, { status: true })}`,
      );
      if (inGroup) {
        const failure = groupSendFailure(message, labels, options.group!);
        if (failure) throw failure;
      }
    });

  program
    .command('typing')
    .summary('tell a contact you are typing')
    .description(
      'tell a contact you are typing (or stopped, with --stop); only delivered if they are online, never stored',
    )
    .argument('<contact>', 'a contact name or an account id')
    .option('--stop', 'say you stopped typing')
    .addHelpText('after', examples('privcomm typing bob', 'privcomm typing bob --stop'))
    .action(async (contact: string, options: { stop?: boolean }, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const to = await client.resolve(contact);
      await client.sendTyping(to, options.stop !== true);
      const labels = await ctx.names(client, self.accountId);
      ctx.out.result(
        { type: 'typing', to, typing: options.stop !== true },
        `Told ${labels.label(to)} you ${options.stop ? 'stopped typing' : 'are typing'} (if online).`,
      );
    });

  program
    .command('delete')
    .summary('delete a message you sent, for everyone')
    .description('delete a message you sent, for everyone (the id is in history)')
    .argument('<contact>', 'a contact name or an account id')
    .argument('<messageId>', 'the id of a message you sent (see "privcomm history CONTACT")')
    .addHelpText('after', examples('privcomm delete bob 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d'))
    .action(async (contact: string, messageId: string, _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const conversation = await client.resolve(contact);
      const labels = await ctx.names(client, self.accountId);
      const message = await client
        .history(conversation)
        .then((list) => list.find((m) => m.id === messageId && m.direction === 'out'));
      if (!message)
        throw new CliError(
          `you sent no message with id ${messageId} to ${labels.label(conversation)}; see "privcomm history ${contact}"`,
          'UNKNOWN_MESSAGE',
        );
      await client.deleteForEveryone(conversation, messageId);
      ctx.out.result(
        { type: 'deleted', conversation, messageId },
        `Deleted message ${messageId} for everyone.`,
      );
    });

  program
    .command('disappear')
    .summary('set the disappearing-message timer')
    .description(
      'set the disappearing-message timer of a conversation, for both sides (0 turns it off)',
    )
    .argument('<contact>', 'a contact name or an account id')
    .argument(
      '<seconds>',
      'seconds after which new messages disappear; 0 = never',
      parseSeconds(MAX_TIMER_SECONDS, 'SECONDS'),
    )
    .addHelpText('after', examples('privcomm disappear bob 3600', 'privcomm disappear bob 0'))
    .action(async (contact: string, seconds: number, _o: unknown, command: Command) => {
      if (!Number.isInteger(seconds)) throw new UsageError('SECONDS must be a whole number');
      const { client, self } = await ctx.openAccount(command);
      const conversation = await client.resolve(contact);
      await client.setDisappearing(conversation, seconds);
      const labels = await ctx.names(client, self.accountId);
      ctx.out.result(
        { type: 'timer', conversation, expireSeconds: seconds },
        seconds > 0
          ? `New messages with ${labels.label(conversation)} disappear after ${seconds} s.`
          : `Disappearing messages with ${labels.label(conversation)} are off.`,
      );
    });
};
