import type { Command } from 'commander';
import { ClientError, type PrivcommClient } from '@privcomm/client';
import { UsageError } from '../errors.ts';
import type { RunContext } from '../run-context.ts';
import { closedByRelay, examples } from './common.ts';
/** listen: stay connected and print events as they come. */

const LISTEN_MAX_BACKOFF_MS = 30_000;

/** A connection kept up by stayConnected. */
export interface KeptConnection {
  /** Stops reconnecting and ends `done` (the caller disconnects the client). */
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
 * Keeps the client connected until stopped: reconnects with exponential backoff (1 s doubling
 * up to 30 s, plus jitter so that many clients do not come back at once), and gives up only on
 * what reconnecting would not cure (the relay refused the login, or closed with 4401/4409).
 * Shared by listen and the daemon. The client core is to take this over: then this one
 * function is replaced by the core's API, and its callers stay as they are.
 */
export const stayConnected = (client: PrivcommClient, report: ConnectionReport): KeptConnection => {
  let stopping = false;
  let wake: (() => void) | undefined;
  let closed: ((event: { code: number; reason: string }) => void) | undefined;
  const unsubscribe = client.subscribe((event) => {
    if (event.type === 'disconnected') closed?.(event);
  });
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  const loop = async () => {
    let backoff = 1000;
    while (!stopping) {
      const lost = new Promise<{ code: number; reason: string }>((resolve) => {
        closed = resolve;
      });
      try {
        await client.connect();
      } catch (error) {
        if (error instanceof ClientError && error.code === 'RELAY_REFUSED') throw error;
        if (stopping) break;
        report.status(
          `privcomm: ${report.describe(error)} — retrying in ${Math.round(backoff / 1000)} s`,
        );
        await pause(backoff + Math.floor(Math.random() * 250));
        backoff = Math.min(backoff * 2, LISTEN_MAX_BACKOFF_MS);
        continue;
      }
      report.connected();
      backoff = 1000;
      const event = await lost;
      if (stopping) break;
      const fatal = closedByRelay(event);
      if (fatal) throw fatal;
      report.status(
        `disconnected (${event.code}${event.reason ? ` ${event.reason}` : ''}); reconnecting in ${Math.round(backoff / 1000)} s`,
      );
      await pause(backoff + Math.floor(Math.random() * 250));
      backoff = Math.min(backoff * 2, LISTEN_MAX_BACKOFF_MS);
    }
  };
  const done = loop().finally(unsubscribe);
  return {
    done,
    stop: () => {
      stopping = true;
      wake?.();
      closed?.({ code: 1000, reason: 'stopping' });
    },
  };
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
      const { client, self, store } = await ctx.openAccount(command);
      const turnAway = options.decline ? 'decline' : options.busy ? 'busy' : undefined;
      let printing: Promise<void> = Promise.resolve();
      let receiptTimer: ReturnType<typeof setTimeout> | undefined;
      const scheduleReceipts = () => {
        clearTimeout(receiptTimer);
        receiptTimer = setTimeout(() => {
          void client.sendOwedReceipts();
        }, 300);
      };
      client.subscribe((event) => {
        // Reconnecting is stayConnected's business.
        if (event.type === 'disconnected') return;
        if (event.type === 'queue-empty') {
          printing = printing.then(() => {
            if (ctx.out.json) ctx.out.result({ type: 'queue-empty' }, '');
            else ctx.out.status('(up to date)');
          });
          scheduleReceipts();
          return;
        }
        printing = printing.then(() => ctx.printEvent(client, self.accountId, event));
        if (event.type === 'message' || event.type === 'contacts-requested') scheduleReceipts();
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
        clearTimeout(receiptTimer);
        stopSignal();
      }
    });
};
