import { Command, CommanderError, InvalidArgumentError } from 'commander';
import {
  CallError,
  ClientError,
  toBase64,
  type CallInfo,
  type CallOptions,
  type CallSummary,
  type ClientEvent,
  type PrivcommClient,
} from '@privcomm/client';
import { CLOSE_CODES } from '@privcomm/wire';
import {
  audioSource,
  CliCallMedia,
  loadWebRtc,
  parseHz,
  waitForCallEnd,
  type AudioOptions,
} from './calls.ts';
import { CliError, describeCallEnd, describeError, EXIT, UsageError } from './errors.ts';
import {
  callStateText,
  callSummaryJson,
  callSummaryText,
  eventOutput,
  groupDigits,
  messageJson,
  messageText,
  Names,
  Output,
} from './output.ts';
import { defaultProfileDir, openProfile, type OpenedProfile } from './profile.ts';

/** What the program runs against: injected so that tests could drive it in-process. */
export interface Io {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Registers a handler for SIGINT and SIGTERM; returns its removal. */
  onSignal(handler: () => void): () => void;
}

interface GlobalOptions {
  server?: string;
  profile?: string;
  json?: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_TIMER_SECONDS = 365 * 24 * 60 * 60;
const LISTEN_MAX_BACKOFF_MS = 30_000;
/** How long `devices add` waits for the new device to show up in the device list. */
const DEVICE_JOIN_WAIT_MS = 30_000;
/** How long `call` waits for the backlog (stale call signals included) before placing the call. */
const CALL_BACKLOG_WAIT_MS = 5_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const examples = (...lines: string[]): string =>
  `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((line) => `  $ ${line}`).join('\n')}`;

export const normalizeServer = (value: string): string => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`"${value}" is not a URL; use e.g. --server http://localhost:8000`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`the server must be an http:// or https:// URL, not "${value}"`);
  if (url.search || url.hash)
    throw new UsageError(`the server URL must not have a query or fragment: "${value}"`);
  return url.toString().replace(/\/+$/, '');
};

const parseSeconds =
  (max: number, what: string) =>
  (value: string): number => {
    if (!/^\d+(\.\d+)?$/.test(value.trim()))
      throw new InvalidArgumentError(`${what} must be a number of seconds (0 to ${max}).`);
    const seconds = Number(value);
    if (seconds > max) throw new InvalidArgumentError(`${what} must be at most ${max} seconds.`);
    return seconds;
  };

const parseDeviceId = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 2 ** 31 - 1)
    throw new InvalidArgumentError(
      'a device id is a positive whole number (see "privcomm devices list").',
    );
  return Number(value);
};

const readAll = async (stream: NodeJS.ReadableStream): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
};

const readLine = async (stream: NodeJS.ReadableStream): Promise<string> => {
  let text = '';
  for await (const chunk of stream) {
    text += Buffer.from(chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  return text.split('\n')[0] ?? '';
};

/** A socket closure that reconnecting would not cure, as the error to stop with. */
const closedByRelay = (event: { code: number }): CliError | undefined => {
  if (event.code === CLOSE_CODES.UNAUTHENTICATED)
    return new CliError(
      'the relay closed the connection: this device is no longer accepted (removed, or the account was deleted)',
      'RELAY_REFUSED',
    );
  if (event.code === CLOSE_CODES.CONNECTED_ELSEWHERE)
    return new CliError(
      'another privcomm connected with this profile (receive or listen elsewhere); only one may be connected at a time',
      'CONNECTED_ELSEWHERE',
    );
  return undefined;
};

/** The command named by the arguments ("privcomm devices add"), for the help hint of an error. */
const commandPath = (program: Command, argv: readonly string[]): string[] => {
  const names = ['privcomm'];
  let current = program;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--server' || arg === '--profile') {
      i += 1;
      continue;
    }
    if (arg.startsWith('-')) continue;
    const next = current.commands.find((c) => c.name() === arg);
    if (!next) break;
    names.push(arg);
    current = next;
  }
  return names;
};

/** Runs the program; resolves with the exit code. */
export const run = async (argv: readonly string[], io: Io): Promise<number> => {
  const opened: OpenedProfile[] = [];
  let exitCode: number = EXIT.OK;
  let serverForErrors = 'http://localhost:8000';
  let out = new Output(false, io);

  const globals = (command: Command) => {
    const options = command.optsWithGlobals<GlobalOptions>();
    out = new Output(options.json === true, io);
    const serverValue = options.server ?? io.env.PRIVCOMM_SERVER;
    const serverOverride =
      serverValue !== undefined && serverValue.trim() !== ''
        ? normalizeServer(serverValue.trim())
        : undefined;
    if (serverOverride) serverForErrors = serverOverride;
    return {
      json: options.json === true,
      profileDir: options.profile ?? defaultProfileDir(io.env),
      serverOverride,
    };
  };

  const open = async (
    command: Command,
    create: boolean,
    calls?: CallOptions,
  ): Promise<OpenedProfile> => {
    const g = globals(command);
    const profile = await openProfile({
      dir: g.profileDir,
      create,
      ...(g.serverOverride === undefined ? {} : { serverOverride: g.serverOverride }),
      ...(calls === undefined ? {} : { calls }),
    });
    opened.push(profile);
    serverForErrors = profile.server;
    return profile;
  };

  /** An opened profile that has an account (every command but register and link). */
  const openAccount = async (command: Command, calls?: CallOptions) => {
    const profile = await open(command, false, calls);
    const self = profile.client.profile;
    if (!self) throw new ClientError('NOT_REGISTERED', 'no account');
    return { ...profile, self };
  };

  const names = async (client: PrivcommClient, self: string) =>
    new Names(self, await client.contacts());

  /** Warns (once per command) when a contact's identity key changed and was not looked at. */
  const warnIdentity = async (client: PrivcommClient, accountId: string, label: string) => {
    const identity = await client.identity(accountId);
    if (identity?.changed) {
      out.warn(
        `the safety number with ${label} changed (new key${identity.verified ? ', not trusted until you accept it' : ''}); compare it with "privcomm safety-number ${label}"`,
      );
    }
  };

  const program = new Command('privcomm')
    .description(
      'End-to-end encrypted messaging through a privcomm relay, for people and bots.\n' +
        'Each profile directory is one device of one account; the relay never sees your messages.',
    )
    .option(
      '--server <url>',
      'relay URL (env PRIVCOMM_SERVER); default: the relay the profile registered with, else http://localhost:8000',
    )
    .option('--profile <dir>', 'profile directory (env PRIVCOMM_PROFILE; default ~/.privcomm)')
    .option('--json', 'print results as JSON, one object per line, on stdout')
    .version('0.1.0', '--version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) =>
        write(
          `privcomm: ${text
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()} (see "${[...commandPath(program, argv), '--help'].join(' ')}")\n`,
        ),
    })
    .addHelpText(
      'after',
      `\nExit codes: 0 success, 1 failure (one line on stderr says what to do), 2 usage error.` +
        examples(
          'privcomm --profile /tmp/alice register',
          'privcomm --profile /tmp/alice contacts add bob 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11',
          'privcomm --profile /tmp/alice send bob "hello"',
          'privcomm --profile /tmp/bob receive',
        ),
    );

  // ---- account ----------------------------------------------------------------------------

  program
    .command('register')
    .summary('create an account (this profile becomes its primary device)')
    .description('create a new account on the relay, with this profile as its primary device')
    .option('--invite <code>', 'invite code, if the relay registers by invitation')
    .option('--name <name>', 'a name for this account, shown on your linked devices')
    .addHelpText(
      'after',
      examples(
        'privcomm --profile /tmp/alice register',
        'privcomm --server https://relay.example.org register --invite 6Y3ZQ9...',
      ),
    )
    .action(async (options: { invite?: string; name?: string }, command: Command) => {
      const { client, server, dir } = await open(command, true);
      const profile = await client.register({
        ...(options.invite === undefined ? {} : { inviteCode: options.invite }),
        ...(options.name === undefined ? {} : { name: options.name }),
      });
      out.result(
        { accountId: profile.accountId, deviceId: profile.deviceId, server, profile: dir },
        [
          `Registered account ${profile.accountId} (device ${profile.deviceId}) on ${server}.`,
          `Give your account id to your contacts: ${profile.accountId}`,
        ],
      );
    });

  program
    .command('whoami')
    .summary("show this profile's account id, device and relay")
    .description("show this profile's account id, device id and relay (no network)")
    .addHelpText('after', examples('privcomm --profile /tmp/alice whoami --json'))
    .action(async (_options: unknown, command: Command) => {
      const { self, server, dir } = await openAccount(command);
      out.result(
        {
          accountId: self.accountId,
          deviceId: self.deviceId,
          server,
          profile: dir,
          ...(self.name === undefined ? {} : { name: self.name }),
        },
        [
          `account  ${self.accountId}`,
          `device   ${self.deviceId}${self.deviceId === 1 ? ' (primary)' : ''}`,
          `server   ${server}`,
          `profile  ${dir}`,
        ],
      );
    });

  // ---- contacts -------------------------------------------------------------------------------

  const contacts = program
    .command('contacts')
    .summary('add and list contacts')
    .description('manage contacts (names for account ids)')
    .addHelpText(
      'after',
      examples(
        'privcomm contacts add bob 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11',
        'privcomm contacts list',
        'privcomm contacts sync',
      ),
    );

  contacts
    .command('add')
    .description('add a contact, or rename one (no network)')
    .argument('<name>', 'the name you will use for them in commands')
    .argument('<accountId>', 'their account id (they see it with "privcomm whoami")')
    .addHelpText(
      'after',
      examples('privcomm contacts add bob 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'),
    )
    .action(async (name: string, accountId: string, _options: unknown, command: Command) => {
      const trimmed = name.trim();
      if (trimmed === '') throw new UsageError('the contact name is empty');
      if (UUID.test(trimmed.toLowerCase()))
        throw new UsageError('a contact name cannot be an account id; pick a name');
      const id = accountId.trim().toLowerCase();
      if (!UUID.test(id))
        throw new UsageError(
          `"${accountId}" is not an account id (like 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11)`,
        );
      const { client, self } = await openAccount(command);
      if (id === self.accountId) throw new CliError('that is your own account id', 'SELF');
      const clash = (await client.contacts()).find((c) => c.name === trimmed && c.accountId !== id);
      if (clash)
        throw new CliError(
          `a contact named "${trimmed}" already exists (${clash.accountId}); pick another name`,
          'CONTACT_EXISTS',
        );
      const contact = await client.addContact(trimmed, id);
      out.result(
        { name: contact.name, accountId: contact.accountId, expireSeconds: contact.expireSeconds },
        `Added ${contact.name} (${contact.accountId}).`,
      );
    });

  contacts
    .command('list')
    .description('list contacts, with their verification state (no network)')
    .addHelpText('after', examples('privcomm contacts list --json'))
    .action(async (_options: unknown, command: Command) => {
      const { client } = await openAccount(command);
      const all = await client.contacts();
      if (all.length === 0 && !out.json)
        out.status('No contacts yet: add one with "privcomm contacts add NAME ACCOUNT_ID".');
      for (const contact of all) {
        const identity = await client.identity(contact.accountId);
        const verified = identity?.verified ?? false;
        const identityChanged = identity?.changed ?? false;
        out.result(
          {
            name: contact.name,
            accountId: contact.accountId,
            expireSeconds: contact.expireSeconds,
            verified,
            identityChanged,
          },
          `${contact.name}  ${contact.accountId}${verified ? '  verified' : ''}${identityChanged ? '  SAFETY NUMBER CHANGED' : ''}${contact.expireSeconds > 0 ? `  disappearing after ${contact.expireSeconds} s` : ''}`,
        );
      }
    });

  contacts
    .command('sync')
    .description(
      "send your contacts' names to your other devices (a newly linked device asks for them by itself)",
    )
    .addHelpText('after', examples('privcomm contacts sync'))
    .action(async (_options: unknown, command: Command) => {
      const { client } = await openAccount(command);
      const count = (await client.contacts()).length;
      if (count === 0) {
        out.result({ type: 'contacts-sent', sent: 0 }, 'No contacts to send.');
        return;
      }
      const sent = await client.syncContacts();
      out.result(
        { type: 'contacts-sent', sent },
        sent === 0
          ? 'No other device to send them to: link one with "privcomm devices add LINK_CODE".'
          : `Sent ${sent} contact${sent === 1 ? '' : 's'} to your other devices: they get them with their next "receive" or "listen".`,
      );
    });

  // ---- messaging ----------------------------------------------------------------------------

  program
    .command('send')
    .summary('send a text message')
    .description('send a text message (from standard input when TEXT is omitted or "-")')
    .argument('<contact>', 'a contact name or an account id')
    .argument('[text]', 'the message; omit it or give "-" to read standard input')
    .addHelpText(
      'after',
      examples('privcomm send bob "see you at 8"', 'echo "build finished" | privcomm send bob'),
    )
    .action(async (contact: string, textArg: string | undefined, _o: unknown, command: Command) => {
      globals(command);
      let text = textArg;
      if (text === undefined || text === '-') {
        if (io.stdin.isTTY) out.status('Type the message, then Ctrl-D:');
        text = (await readAll(io.stdin)).replace(/\r?\n$/, '');
      }
      if (text.trim() === '') throw new UsageError('the message is empty; nothing was sent');
      const { client, self } = await openAccount(command);
      const to = await client.resolve(contact);
      if (to === self.accountId)
        throw new CliError('you cannot send a message to yourself', 'SELF');
      const names = new Names(self.accountId, await client.contacts());
      try {
        await client.flushOutbox();
      } catch (error) {
        out.warn(
          `earlier messages are still waiting to be sent: ${describeError(error, serverForErrors).message}`,
        );
      }
      const message = await client.sendText(to, text);
      out.result(
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
      await warnIdentity(client, to, names.label(to));
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
      const { client, self } = await openAccount(command);
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
          printing = printing.then(() => printEvent(client, self.accountId, event));
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

  /** Prints one core event (contact names looked up at the time). */
  const printEvent = async (client: PrivcommClient, self: string, event: ClientEvent) => {
    const shown = eventOutput(event, await names(client, self));
    if (shown) out.result(shown.json, shown.text);
  };

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
      const { client, self, store } = await openAccount(command);
      const turnAway = options.decline ? 'decline' : options.busy ? 'busy' : undefined;
      let stopping = false;
      let printing: Promise<void> = Promise.resolve();
      let wake: (() => void) | undefined;
      let closed: ((event: { code: number; reason: string }) => void) | undefined;
      let receiptTimer: ReturnType<typeof setTimeout> | undefined;
      const scheduleReceipts = () => {
        clearTimeout(receiptTimer);
        receiptTimer = setTimeout(() => {
          void client.sendOwedReceipts();
        }, 300);
      };
      client.subscribe((event) => {
        if (event.type === 'disconnected') {
          closed?.(event);
          return;
        }
        if (event.type === 'queue-empty') {
          printing = printing.then(() => {
            if (out.json) out.result({ type: 'queue-empty' }, '');
            else out.status('(up to date)');
          });
          scheduleReceipts();
          return;
        }
        printing = printing.then(() => printEvent(client, self.accountId, event));
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
              out.warn(
                `could not turn the call away: ${describeError(error, serverForErrors).message}`,
              ),
            );
          });
        }
      });
      const expiry = setInterval(() => {
        void store.removeExpired(Date.now()).then((expired) => {
          for (const message of expired)
            out.result(
              { type: 'expired', conversation: message.conversation, messageId: message.id },
              `message ${message.id} disappeared (timer)`,
            );
        });
      }, 1000);
      const stopSignal = io.onSignal(() => {
        stopping = true;
        wake?.();
        closed?.({ code: 1000, reason: 'stopping' });
      });
      const pause = (ms: number) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(resolve, ms);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      let backoff = 1000;
      try {
        while (!stopping) {
          const lost = new Promise<{ code: number; reason: string }>((resolve) => {
            closed = resolve;
          });
          try {
            await client.connect();
          } catch (error) {
            if (error instanceof ClientError && error.code === 'RELAY_REFUSED') throw error;
            if (stopping) break;
            out.status(
              `privcomm: ${describeError(error, serverForErrors).message} — retrying in ${Math.round(backoff / 1000)} s`,
            );
            await pause(backoff + Math.floor(Math.random() * 250));
            backoff = Math.min(backoff * 2, LISTEN_MAX_BACKOFF_MS);
            continue;
          }
          out.status(`connected to ${serverForErrors} as device ${self.deviceId}; Ctrl-C stops`);
          backoff = 1000;
          const event = await lost;
          if (stopping) break;
          const fatal = closedByRelay(event);
          if (fatal) throw fatal;
          out.status(
            `disconnected (${event.code}${event.reason ? ` ${event.reason}` : ''}); reconnecting in ${Math.round(backoff / 1000)} s`,
          );
          await pause(backoff + Math.floor(Math.random() * 250));
          backoff = Math.min(backoff * 2, LISTEN_MAX_BACKOFF_MS);
        }
        await client.disconnect();
        await printing;
      } finally {
        clearInterval(expiry);
        clearTimeout(receiptTimer);
        stopSignal();
      }
    });

  // ---- calls --------------------------------------------------------------------------------

  /** Prints how a call went (with what was heard), records it, and fails unless it connected. */
  const finishCall = (
    summary: CallSummary,
    media: CliCallMedia | undefined,
    labels: Names,
    options: AudioOptions,
    localHangup: boolean,
  ) => {
    const heard = media?.heard ?? { rms: 0, dominantHz: 0 };
    if (media && options.record !== undefined) media.record(options.record);
    out.result(
      {
        ...callSummaryJson(summary, labels),
        rms: Math.round(heard.rms * 10_000) / 10_000,
        dominantHz: heard.dominantHz,
        ...(options.record === undefined ? {} : { recorded: options.record }),
      },
      [
        callSummaryText(summary, labels),
        ...(summary.connected
          ? [`heard: level ${heard.rms.toFixed(3)} RMS, strongest frequency ${heard.dominantHz} Hz`]
          : []),
        ...(options.record === undefined ? [] : [`recorded what was heard to ${options.record}`]),
      ],
    );
    if (!summary.connected)
      throw new CliError(
        describeCallEnd(summary, labels.label(summary.peer), localHangup),
        `CALL_${summary.reason.toUpperCase().replace(/-/g, '_')}`,
      );
  };

  const showCallState = (labels: Names) => (event: Extract<ClientEvent, { type: 'call' }>) => {
    if (event.state.status !== 'idle' && event.state.status !== 'ended')
      out.status(callStateText(event.state, labels));
  };

  const audioHelp =
    '\n--tone sends a sine wave, --play a 16-bit PCM WAV file (mono or the first channel; 8 to 48 kHz),' +
    '\nas the microphone; without either, silence. --record writes what the peer sent as a WAV file' +
    '\n(48 kHz mono). The summary gives the level (RMS, 0 to 1) and strongest frequency of what was heard.';

  program
    .command('call')
    .summary('call a contact (voice), sending a tone or a WAV file')
    .description(
      'place a voice call, send a tone or a WAV file as the microphone, hang up after --duration seconds once connected, and print a summary; exit 0 if the call connected, 1 otherwise (declined, busy, no answer, failed…)',
    )
    .argument('<contact>', 'a contact name or an account id')
    .option(
      '--relay-only',
      'send media only through the TURN relay, so the contact never learns your address (always on for contacts you have not verified)',
    )
    .option('--tone <hz>', 'send a sine wave at this frequency', parseHz)
    .option('--play <file>', 'send this WAV file (then silence)')
    .option('--record <file>', 'write what the contact sent to this WAV file')
    .option(
      '--duration <seconds>',
      'hang up this many seconds after the call connected',
      parseSeconds(24 * 3600, '--duration'),
      5,
    )
    .option(
      '--ring-timeout <seconds>',
      'give up ("no answer") if not answered within this many seconds',
      parseSeconds(600, '--ring-timeout'),
      60,
    )
    .addHelpText(
      'after',
      `${audioHelp}\nTURN servers and credentials come from the relay (GET /v1/turn) at each call.` +
        examples(
          'privcomm call bob --tone 440 --duration 10',
          'privcomm call bob --play alert.wav --record reply.wav --json',
          'privcomm call bob --relay-only --ring-timeout 20',
        ),
    )
    .action(
      async (
        contact: string,
        options: AudioOptions & {
          relayOnly?: boolean;
          duration: number;
          ringTimeout: number;
        },
        command: Command,
      ) => {
        globals(command);
        if (options.duration <= 0) throw new UsageError('--duration must be more than 0 seconds');
        if (options.ringTimeout < 1)
          throw new UsageError('--ring-timeout must be at least 1 second');
        const source = audioSource(options);
        const webrtc = loadWebRtc();
        const { client, self } = await openAccount(command, {
          webrtc,
          ringTimeoutMs: Math.round(options.ringTimeout * 1000),
        });
        const to = await client.resolve(contact);
        if (to === self.accountId) throw new CliError('you cannot call your own account', 'SELF');
        const labels = await names(client, self.accountId);

        let queueEmpty: () => void = () => undefined;
        const backlog = new Promise<void>((resolve) => (queueEmpty = resolve));
        let stopped = false;
        const unsubscribe = client.subscribe((event) => {
          if (event.type === 'queue-empty') queueEmpty();
          if (event.type === 'disconnected' && !stopped)
            out.warn(
              closedByRelay(event)?.message ??
                `the connection to the relay was lost (${event.code}); the call may not hear a hang-up`,
            );
        });
        try {
          await client.connect();
          // Stale signals in the queue are handled first (an offer that still rings would make
          // this device busy).
          let wait: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            backlog,
            new Promise<void>((resolve) => (wait = setTimeout(resolve, CALL_BACKLOG_WAIT_MS))),
          ]);
          clearTimeout(wait);

          const media = new CliCallMedia(source);
          let call: CallInfo;
          try {
            call = await client.calls.start(to, {
              media,
              ...(options.relayOnly ? { relayOnly: true } : {}),
            });
          } catch (error) {
            media.stop();
            throw error;
          }
          out.status(
            `calling ${labels.label(to)}… (Ctrl-C hangs up; hangs up ${options.duration} s after connecting)`,
          );
          const { summary, localHangup } = await waitForCallEnd(client, call.callId, {
            durationMs: Math.round(options.duration * 1000),
            onSignal: io.onSignal,
            onState: showCallState(labels),
          });
          media.stop();
          stopped = true;
          await client.disconnect();
          finishCall(summary, media, labels, options, localHangup);
        } finally {
          stopped = true;
          unsubscribe();
        }
      },
    );

  program
    .command('answer')
    .summary('wait for an incoming call and answer it')
    .description(
      'wait for an incoming voice call, answer it, send a tone or a WAV file as the microphone, and print a summary when the caller hangs up (Ctrl-C hangs up); exit 0 if the call connected, 1 otherwise (no call within --timeout, the caller gave up, failed…)',
    )
    .option(
      '--timeout <seconds>',
      'give up ("no call") if no call rings within this many seconds',
      parseSeconds(24 * 3600, '--timeout'),
      30,
    )
    .option('--tone <hz>', 'send a sine wave at this frequency', parseHz)
    .option('--play <file>', 'send this WAV file (then silence)')
    .option('--record <file>', 'write what the caller sent to this WAV file')
    .addHelpText(
      'after',
      `${audioHelp}\nMedia goes through the relay's TURN server unless you verified the caller ("privcomm verify").` +
        examples(
          'privcomm answer --json',
          'privcomm answer --timeout 120 --tone 880 --record caller.wav',
        ),
    )
    .action(async (options: AudioOptions & { timeout: number }, command: Command) => {
      globals(command);
      const source = audioSource(options);
      const webrtc = loadWebRtc();
      const { client, self } = await openAccount(command, { webrtc });
      const labels = await names(client, self.accountId);

      let stopped = false;
      let rang: (call: CallInfo | undefined) => void = () => undefined;
      const ringing = new Promise<CallInfo | undefined>((resolve) => (rang = resolve));
      const unsubscribe = client.subscribe((event) => {
        if (
          event.type === 'call' &&
          event.state.status === 'ringing' &&
          event.state.call.direction === 'incoming'
        )
          rang(event.state.call);
        if (event.type === 'disconnected' && !stopped)
          out.warn(
            closedByRelay(event)?.message ??
              `the connection to the relay was lost (${event.code}); the call may not hear a hang-up`,
          );
      });
      let interrupted = false;
      const removeSignal = io.onSignal(() => {
        interrupted = true;
        rang(undefined);
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await client.connect();
        out.status(
          `waiting for a call (up to ${options.timeout} s) as device ${self.deviceId}; Ctrl-C stops`,
        );
        timer = setTimeout(() => rang(undefined), options.timeout * 1000);
        const call = await ringing;
        clearTimeout(timer);
        removeSignal();
        if (!call)
          throw new CliError(
            interrupted
              ? 'no call: stopped before one came in'
              : `no call: none came in within ${options.timeout} s`,
            'NO_CALL',
          );
        out.status(`answering the call from ${labels.label(call.peer)}…`);
        const media = new CliCallMedia(source);
        try {
          await client.calls.accept({ media });
        } catch (error) {
          // It stopped ringing meanwhile (the caller hung up): its summary says why.
          media.stop();
          if (!(error instanceof CallError)) throw error;
        }
        const { summary, localHangup } = await waitForCallEnd(client, call.callId, {
          onSignal: io.onSignal,
          onState: showCallState(labels),
        });
        media.stop();
        stopped = true;
        await client.disconnect();
        finishCall(summary, media, labels, options, localHangup);
      } finally {
        stopped = true;
        clearTimeout(timer);
        removeSignal();
        unsubscribe();
      }
    });

  program
    .command('history')
    .summary('print a conversation (and mark it read)')
    .description(
      'print the conversation with a contact, oldest first, with the status of each message; marks received messages read and tells the sender (unless --no-read)',
    )
    .argument('<contact>', 'a contact name or an account id')
    .option('--no-read', 'do not mark messages read nor send read receipts')
    .addHelpText('after', examples('privcomm history bob', 'privcomm history bob --no-read --json'))
    .action(async (contact: string, options: { read: boolean }, command: Command) => {
      const { client, self } = await openAccount(command);
      const conversation = await client.resolve(contact);
      const list = await client.history(conversation);
      const labels = await names(client, self.accountId);
      if (list.length === 0 && !out.json)
        out.status(`No messages with ${labels.label(conversation)}.`);
      for (const message of list)
        out.result(messageJson(message, labels), messageText(message, labels, { status: true }));
      if (options.read) {
        try {
          await client.markRead(conversation);
        } catch (error) {
          out.warn(
            `could not send read receipts: ${describeError(error, serverForErrors).message}`,
          );
        }
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
      const { client, self } = await openAccount(command);
      const to = await client.resolve(contact);
      await client.sendTyping(to, options.stop !== true);
      const labels = await names(client, self.accountId);
      out.result(
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
      const { client, self } = await openAccount(command);
      const conversation = await client.resolve(contact);
      const labels = await names(client, self.accountId);
      const message = await client
        .history(conversation)
        .then((list) => list.find((m) => m.id === messageId && m.direction === 'out'));
      if (!message)
        throw new CliError(
          `you sent no message with id ${messageId} to ${labels.label(conversation)}; see "privcomm history ${contact}"`,
          'UNKNOWN_MESSAGE',
        );
      await client.deleteForEveryone(conversation, messageId);
      out.result(
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
      const { client, self } = await openAccount(command);
      const conversation = await client.resolve(contact);
      await client.setDisappearing(conversation, seconds);
      const labels = await names(client, self.accountId);
      out.result(
        { type: 'timer', conversation, expireSeconds: seconds },
        seconds > 0
          ? `New messages with ${labels.label(conversation)} disappear after ${seconds} s.`
          : `Disappearing messages with ${labels.label(conversation)} are off.`,
      );
    });

  // ---- identities ---------------------------------------------------------------------------

  program
    .command('safety-number')
    .summary('show the safety number with a contact')
    .description(
      'show the safety number with a contact: compare it with theirs (in person or on a call) to rule out interception',
    )
    .argument('<contact>', 'a contact name or an account id')
    .addHelpText(
      'after',
      '\nBoth sides see the same 60 digits. With --json, "scannable" is the QR-code form in base64.' +
        examples('privcomm safety-number bob', 'privcomm safety-number bob --json'),
    )
    .action(async (contact: string, _o: unknown, command: Command) => {
      const { client, self } = await openAccount(command);
      const accountId = await client.resolve(contact);
      const number = await client.safetyNumber(accountId);
      const identity = await client.identity(accountId);
      const labels = await names(client, self.accountId);
      const groups = groupDigits(number.digits);
      out.result(
        {
          accountId,
          ...(labels.contact(accountId) === undefined
            ? {}
            : { contact: labels.contact(accountId) }),
          safetyNumber: groups.join(' '),
          digits: number.digits,
          scannable: toBase64(number.scannable),
          verified: identity?.verified ?? false,
          identityChanged: identity?.changed ?? false,
        },
        [
          `Safety number with ${labels.label(accountId)}${identity?.verified ? ' (verified)' : ''}:`,
          ...[0, 4, 8].map((i) => `  ${groups.slice(i, i + 4).join(' ')}`),
          identity?.changed
            ? `It CHANGED recently. Compare it again before trusting it.`
            : `If it matches theirs, run: privcomm verify ${contact}`,
        ],
      );
    });

  program
    .command('verify')
    .summary('mark a contact verified')
    .description(
      'mark a contact as verified after comparing safety numbers; from then on a new key of theirs blocks sending until you accept it',
    )
    .argument('<contact>', 'a contact name or an account id')
    .argument('[safetyNumber...]', 'the number they read to you: checked against yours first')
    .addHelpText(
      'after',
      examples(
        'privcomm verify bob',
        'privcomm verify bob 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890',
      ),
    )
    .action(async (contact: string, number: string[], _o: unknown, command: Command) => {
      const given = number.join('').replace(/\s+/g, '');
      if (given !== '' && !/^\d{60}$/.test(given))
        throw new UsageError('a safety number is 60 digits (spaces allowed)');
      const { client, self } = await openAccount(command);
      const accountId = await client.resolve(contact);
      const labels = await names(client, self.accountId);
      if (given !== '') {
        const mine = await client.safetyNumber(accountId);
        if (mine.digits !== given)
          throw new CliError(
            `the safety numbers do not match: ${labels.label(accountId)} was NOT verified. Someone may be intercepting; compare again in person`,
            'SAFETY_NUMBER_MISMATCH',
          );
      }
      await client.verify(accountId);
      out.result(
        { accountId, verified: true },
        `${labels.label(accountId)} is verified. If their key ever changes, sending stops until you accept the new one.`,
      );
    });

  program
    .command('accept-identity')
    .summary("trust a contact's new identity key")
    .description(
      "trust a contact's new identity key (after their safety number changed); the contact is then no longer verified",
    )
    .argument('<contact>', 'a contact name or an account id')
    .addHelpText('after', examples('privcomm safety-number bob', 'privcomm accept-identity bob'))
    .action(async (contact: string, _o: unknown, command: Command) => {
      const { client, self } = await openAccount(command);
      const accountId = await client.resolve(contact);
      await client.acceptIdentity(accountId);
      const labels = await names(client, self.accountId);
      out.result(
        { accountId, accepted: true, verified: false },
        `Accepted the new key of ${labels.label(accountId)}. Compare safety numbers again, then run: privcomm verify ${contact}`,
      );
    });

  // ---- devices ------------------------------------------------------------------------------

  const devices = program
    .command('devices')
    .summary('list, add or remove devices')
    .description("list, add or remove this account's devices (at most 6)")
    .addHelpText(
      'after',
      examples(
        'privcomm devices list',
        'privcomm devices add <LINK_CODE>',
        'privcomm devices remove 2',
      ),
    );

  devices
    .command('list')
    .description("list the account's devices")
    .addHelpText('after', examples('privcomm devices list --json'))
    .action(async (_o: unknown, command: Command) => {
      const { client, self } = await openAccount(command);
      const { devices: list } = await client.devices();
      for (const device of list) {
        const current = device.deviceId === self.deviceId;
        out.result(
          {
            deviceId: device.deviceId,
            createdOn: device.createdOn,
            lastSeenOn: device.lastSeenOn,
            current,
          },
          `device ${device.deviceId}${device.deviceId === 1 ? ' (primary)' : ''}${current ? ' (this one)' : ''}  created ${device.createdOn}, last seen ${device.lastSeenOn}`,
        );
      }
    });

  devices
    .command('add')
    .description(
      'on the primary device: link a new device, with the code that "privcomm link" shows on it',
    )
    .argument('<linkCode>', 'the code printed by "privcomm link" on the new device')
    .addHelpText('after', examples('privcomm devices add Qm9v...XyZ.BXk3...'))
    .action(async (linkCode: string, _o: unknown, command: Command) => {
      const { client } = await openAccount(command);
      const before = new Set((await client.devices()).devices.map((d) => d.deviceId));
      await client.addDevice(linkCode);
      out.status('Sent the account to the new device; waiting for it to join…');
      const deadline = Date.now() + DEVICE_JOIN_WAIT_MS;
      while (Date.now() < deadline) {
        const added = (await client.devices()).devices.find((d) => !before.has(d.deviceId));
        if (added) {
          out.result(
            { type: 'device-added', deviceId: added.deviceId },
            `Linked device ${added.deviceId}.`,
          );
          return;
        }
        await sleep(500);
      }
      out.result(
        { type: 'device-pending' },
        'The new device has not joined yet; check "privcomm devices list" in a moment.',
      );
    });

  devices
    .command('remove')
    .description('remove a device from the account (it can no longer send or receive)')
    .argument('<id>', 'the device id (see "privcomm devices list")', parseDeviceId)
    .addHelpText('after', examples('privcomm devices remove 2'))
    .action(async (deviceId: number, _o: unknown, command: Command) => {
      const { client, self } = await openAccount(command);
      if (deviceId === self.deviceId)
        throw new CliError(
          'that is this device; remove it from another device of the account',
          'SELF',
        );
      await client.removeDevice(deviceId);
      out.result({ type: 'device-removed', deviceId }, `Removed device ${deviceId}.`);
    });

  program
    .command('link')
    .summary('join an existing account as a new device')
    .description(
      'on a new device: join an existing account. Prints a link code to enter on the primary device, waits, then prints the new device id',
    )
    .addHelpText(
      'after',
      examples(
        'privcomm --profile /tmp/alice-laptop link',
        '# then, on the primary: privcomm --profile /tmp/alice devices add <LINK_CODE>',
      ),
    )
    .action(async (_o: unknown, command: Command) => {
      const { client, server } = await open(command, true);
      const { linkCode, done } = await client.startLink();
      out.result({ type: 'link-code', linkCode }, [
        `Link code: ${linkCode}`,
        `On your primary device, run: privcomm devices add ${linkCode}`,
      ]);
      out.status('Waiting for the primary device (up to 10 minutes; Ctrl-C cancels)…');
      const profile = await done;
      out.result(
        { type: 'linked', accountId: profile.accountId, deviceId: profile.deviceId, server },
        `Linked: this profile is device ${profile.deviceId} of account ${profile.accountId}. Your contacts come with the next "privcomm receive", once another of your devices has been online.`,
      );
    });

  program
    .command('delete-account')
    .summary('delete the account on the relay')
    .description(
      'on the primary device: delete the account and all its devices on the relay (local history stays in the profile)',
    )
    .option('--yes', 'do not ask for confirmation')
    .addHelpText('after', examples('privcomm delete-account', 'privcomm delete-account --yes'))
    .action(async (options: { yes?: boolean }, command: Command) => {
      const { client, self, dir } = await openAccount(command);
      if (self.deviceId !== 1)
        throw new ClientError('NOT_PRIMARY', 'only the primary device can delete the account');
      if (!options.yes) {
        io.stderr.write(
          `Delete account ${self.accountId} and all its devices on the relay? This cannot be undone. Type "delete" to confirm: `,
        );
        const answer = (await readLine(io.stdin)).trim();
        if (answer !== 'delete')
          throw new CliError(
            'not confirmed: nothing was deleted (pass --yes to skip the question)',
            'NOT_CONFIRMED',
          );
      }
      await client.deleteAccount();
      out.result(
        { type: 'account-deleted', accountId: self.accountId },
        `Deleted account ${self.accountId} on the relay. Local history remains in ${dir}; delete that directory to remove it.`,
      );
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version: exit 0. Help shown because no command was given: a usage error.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version')
        exitCode = EXIT.OK;
      else exitCode = EXIT.USAGE;
    } else {
      const described = describeError(error, serverForErrors);
      out.error(described.message);
      if (io.env.PRIVCOMM_DEBUG && error instanceof Error && error.stack)
        io.stderr.write(`${error.stack}\n`);
      exitCode = described.exitCode;
    }
  } finally {
    for (const profile of opened) await profile.close().catch(() => undefined);
  }
  return exitCode;
};
