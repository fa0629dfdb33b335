import type { Command } from 'commander';
import type { PrivcommClient } from '@privcomm/client';
import { UsageError } from '../errors.ts';
import type { RunContext } from '../run-context.ts';
import { examples } from './common.ts';
/** listen: stay connected and print events as they come. */

/** A connection kept up by stayConnected. */
export interface KeptConnection {
  /** Stops reconnecting and ends `done`, after the client handled what it received. */
  stop(): void;
  /** Settles when stopped; rejects when the relay refuses this device or another took its place. */
  readonly done: Promise<void>;
}

export interface ConnectionReport {
  /** A line for people: the relay cannot be reached, or the connection was lost. */
  status(text: string): void;
  describe(error: unknown): string;
  /** Called after each successful (re)connection. */
  connected(): void;
}

/**
 * Keeps the client connected until stopped, through the core's `start` (backoff with jitter,
 * resuming after each connection, giving up only on a refusal that retrying would not cure),
 * and says what happens in the CLI's words. Shared by listen and the daemon.
 */
export const stayConnected = (client: PrivcommClient, report: ConnectionReport): KeptConnection => {
  const unsubscribe = client.subscribe((event) => {
    if (event.type !== 'connection') return;
    const { state, retryInMs, error } = event.status;
    if (state === 'online') report.connected();
    if (state === 'offline' && retryInMs !== undefined) {
      const why = error ? report.describe(error) : 'disconnected';
      report.status(
        `privcomm: ${why} — retrying in ${Math.max(1, Math.round(retryInMs / 1000))} s`,
      );
    }
  });
  const done = client.start().finally(unsubscribe);
  return { done, stop: () => void client.stop() };
};
export const addListenCommand = (program: Command, ctx: RunContext): void => {
  program
    .command('listen')
    .summary('stay connected and print events as they come')
    .description(
      'stay connected and print every event as it comes (messages, receipts, typing, deletions, timers, identity changes, incoming calls); reconnects by itself; Ctrl-C stops',
    )
    .option('--decline', 'decline every incoming call at once')
    .option('--busy', 'answer every incoming call "busy" at once')
    .addHelpText(
      'after',
      '\nWith --json, {"type":"queue-empty"} follows the backlog after each (re)connection.' +
        '\nIncoming calls show as "call" (ringing) and "call-ended" events; listen does not answer' +
        '\nthem (use "privcomm answer" for that), but --decline or --busy turns them away.' +
        examples(
          'privcomm listen',
          'privcomm listen --json | my-bot',
          'privcomm listen --decline --json',
        ),
    )
    .action(async (options: { decline?: boolean; busy?: boolean }, command: Command) => {
      if (options.decline && options.busy)
        throw new UsageError('give --decline or --busy, not both');
      ctx.relay.stayingConnected = true;
      const { client, self, store } = await ctx.openAccount(command);
      const turnAway = options.decline ? 'decline' : options.busy ? 'busy' : undefined;
      let printing: Promise<void> = Promise.resolve();
      client.subscribe((event) => {
        // Reconnecting is stayConnected's business.
        if (event.type === 'disconnected') return;
        if (event.type === 'queue-empty') {
          printing = printing.then(() => {
            if (ctx.out.json) ctx.out.result({ type: 'queue-empty' }, '');
            else ctx.out.status('(up to date)');
          });
          return;
        }
        printing = printing.then(() => ctx.printEvent(client, self.accountId, event));
        if (
          turnAway &&
          event.type === 'call' &&
          event.state.status === 'ringing' &&
          event.state.call.direction === 'incoming'
        ) {
          const { callId } = event.state.call;
          // After the core finished handling the offer (this runs inside its event).
          setImmediate(() => {
            const state = client.calls.state;
            if (state.status !== 'ringing' || state.call.callId !== callId) return;
            const action = turnAway === 'decline' ? client.calls.decline() : client.calls.busy();
            void action.catch((error: unknown) =>
              ctx.out.warn(`could not turn the call away: ${ctx.describe(error).message}`),
            );
          });
        }
      });
      const expiry = setInterval(() => {
        void store.removeExpired(Date.now()).then((expired) => {
          for (const message of expired)
            ctx.out.result(
              { type: 'expired', conversation: message.conversation, messageId: message.id },
              `message ${message.id} disappeared (timer)`,
            );
        });
      }, 1000);
      const connection = stayConnected(client, {
        status: (text) => ctx.out.status(text),
        describe: (error) => ctx.describe(error).message,
        connected: () =>
          ctx.out.status(
            `connected to ${ctx.serverForErrors} as device ${self.deviceId}; Ctrl-C stops`,
          ),
      });
      const stopSignal = ctx.io.onSignal(() => connection.stop());
      try {
        await connection.done;
        await client.disconnect();
        await printing;
      } finally {
        clearInterval(expiry);
        stopSignal();
      }
    });
};
