import type { Command } from 'commander';
import type { StoredMessage } from '@privcomm/client';
import { CliError, UsageError } from '../errors.ts';
import { messageJson, messageText } from '../output.ts';
import type { RunContext } from '../run-context.ts';
import { closedByRelay, examples, parseSeconds, readAll } from './common.ts';
import {
  contactAndValue,
  isUnreachable,
  nameConversation,
  openConversation,
  type Conversation,
} from './conversation.ts';

const MAX_TIMER_SECONDS = 365 * 24 * 60 * 60;

/** What `send` and `retry` get: two optional arguments (the first a contact), or --group. */
type ContactOrGroupArgs = [
  first: string | undefined,
  second: string | undefined,
  options: { group?: string },
  command: Command,
];

/** After `history`: received messages marked read, read receipts sent (a failure only warns). */
const markRead = async (ctx: RunContext, conversation: Conversation): Promise<void> => {
  try {
    await conversation.markRead();
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
      const [contact, textArg] = contactAndValue(first, second, options.group);
      const name = nameConversation(contact, options.group, {
        both: 'with --group, give only the text (the group replaces the contact)',
        neither: `missing required argument 'contact' (see "privcomm send --help")`,
      });
      let text = textArg;
      if (text === undefined || text === '-') {
        if (ctx.io.stdin.isTTY) ctx.out.status('Type the message, then Ctrl-D:');
        text = (await readAll(ctx.io.stdin)).replace(/\r?\n$/, '');
      }
      if (text.trim() === '') throw new UsageError('the message is empty; nothing was sent');
      const { client, self } = await ctx.openAccount(command);
      const conversation = await openConversation(ctx, client, self.accountId, name);
      await conversation.beforeSend();
      let message: StoredMessage;
      try {
        message = await conversation.send(text);
      } catch (error) {
        if (!isUnreachable(error)) throw error;
        // The send stored it and kept it in the outbox: say so, so that nobody sends it twice.
        const kept = await conversation.keptAfterUnreachable(text);
        throw new CliError(
          `${(error as Error).message}. The message is kept in this profile${kept ? ` (id ${kept.id})` : ''} and will be sent by the next "privcomm send", "receive" or "listen" that reaches the relay: do not send it again`,
          'RELAY_UNREACHABLE',
        );
      }
      await conversation.reportSent(message);
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
        const name = nameConversation(contactArg, options.group, {
          both: 'give either a contact or --group, not both',
          neither: `missing required argument 'contact' (see "privcomm history --help")`,
        });
        const conversation = await openConversation(ctx, client, self.accountId, name);
        const list = await client.history(conversation.id);
        const labels = await ctx.names(client, self.accountId);
        if (list.length === 0 && !ctx.out.json) ctx.out.status(conversation.noMessages(labels));
        for (const message of list)
          ctx.out.result(
            messageJson(message, labels),
            messageText(message, labels, { status: true }),
          );
        if (options.read) await markRead(ctx, conversation);
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
      const [contact, messageId] = contactAndValue(first, second, options.group);
      const usage = {
        both: 'with --group, give only the message id',
        neither: 'give the contact and the message id (see "privcomm retry --help")',
      };
      const name = nameConversation(contact, options.group, usage);
      if (messageId === undefined)
        throw new UsageError('group' in name ? usage.both : usage.neither);
      const { client, self } = await ctx.openAccount(command);
      const conversation = await openConversation(ctx, client, self.accountId, name);
      const message = await client.retryMessage(conversation.id, messageId);
      const labels = await ctx.names(client, self.accountId);
      ctx.out.result(
        { ...messageJson(message, labels), type: 'retried' },
        `Sent again: ${messageText(message, labels, { status: true })}`,
      );
      const failure = conversation.retryFailure(message, labels);
      if (failure) throw failure;
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
