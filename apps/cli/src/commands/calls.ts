import { CallError, type CallInfo, type CallSummary, type ClientEvent } from '@privcomm/client';
import { InvalidArgumentError, type Command } from 'commander';
import type { AudioOptions, CliCallMedia } from '../calls.ts';
import { CliError, describeCallEnd, UsageError } from '../errors.ts';
import { callStateText, callSummaryJson, callSummaryText, type Names } from '../output.ts';
import type { RunContext } from '../run-context.ts';
import { closedByRelay, examples, parseSeconds } from './common.ts';
/**
 * The call machinery (WebRTC, audio files): imported by the call commands only, so that the
 * other commands start without it.
 */
const loadCalls = () => import('../calls.ts');

export const MAX_TONE_HZ = 20_000;

export const parseHz = (value: string): number => {
  const hz = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || hz < 20 || hz > MAX_TONE_HZ)
    throw new InvalidArgumentError(`--tone must be a frequency in Hz (20 to ${MAX_TONE_HZ}).`);
  return hz;
};

/** How long `call` waits for the backlog (stale call signals included) before placing the call. */
const CALL_BACKLOG_WAIT_MS = 5_000;

/** call and answer: voice calls with a tone or a WAV file as the microphone. */
export const addCallCommands = (program: Command, ctx: RunContext): void => {
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
    ctx.out.result(
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
      ctx.out.status(callStateText(event.state, labels));
  };

  const iceLogHelp =
    'write every ICE candidate sent and received to this file (JSON lines; they hold network addresses), to see why the call took the path it did';

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
    .option('--ice-log <file>', iceLogHelp)
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
          iceLog?: string;
          duration: number;
          ringTimeout: number;
        },
        command: Command,
      ) => {
        ctx.globals(command);
        if (options.duration <= 0) throw new UsageError('--duration must be more than 0 seconds');
        if (options.ringTimeout < 1)
          throw new UsageError('--ring-timeout must be at least 1 second');
        const { audioSource, CliCallMedia, HeldSignals, iceLog, loadWebRtc, waitForCallEnd } =
          await loadCalls();
        const source = audioSource(options);
        const observer =
          options.iceLog === undefined
            ? undefined
            : iceLog(options.iceLog, (message) => ctx.out.warn(message));
        const webrtc = loadWebRtc();
        const { client, self } = await ctx.openAccount(command, {
          webrtc,
          ringTimeoutMs: Math.round(options.ringTimeout * 1000),
        });
        const to = await client.resolve(contact);
        if (to === self.accountId) throw new CliError('you cannot call your own account', 'SELF');
        const labels = await ctx.names(client, self.accountId);

        let queueEmpty: () => void = () => undefined;
        const backlog = new Promise<void>((resolve) => (queueEmpty = resolve));
        let stopped = false;
        let signals: InstanceType<typeof HeldSignals> | undefined;
        const unsubscribe = client.subscribe((event) => {
          if (event.type === 'queue-empty') queueEmpty();
          if (event.type === 'disconnected' && !stopped)
            ctx.out.warn(
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
          signals = new HeldSignals(ctx.io.onSignal);
          let call: CallInfo;
          try {
            call = await client.calls.start(to, {
              media,
              ...(options.relayOnly ? { relayOnly: true } : {}),
              ...(observer === undefined ? {} : { observer }),
            });
          } catch (error) {
            media.stop();
            throw error;
          }
          ctx.out.status(
            `calling ${labels.label(to)}… (Ctrl-C hangs up; hangs up ${options.duration} s after connecting)`,
          );
          const { summary, localHangup } = await waitForCallEnd(client, call.callId, {
            durationMs: Math.round(options.duration * 1000),
            onSignal: signals.onSignal,
            onState: showCallState(labels),
          });
          media.stop();
          stopped = true;
          await client.disconnect();
          finishCall(summary, media, labels, options, localHangup);
        } finally {
          stopped = true;
          signals?.close();
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
    .option('--ice-log <file>', iceLogHelp)
    .addHelpText(
      'after',
      `${audioHelp}\nMedia goes through the relay's TURN server unless you verified the caller ("privcomm verify").` +
        examples(
          'privcomm answer --json',
          'privcomm answer --timeout 120 --tone 880 --record caller.wav',
        ),
    )
    .action(
      async (options: AudioOptions & { timeout: number; iceLog?: string }, command: Command) => {
        ctx.globals(command);
        const { audioSource, CliCallMedia, HeldSignals, iceLog, loadWebRtc, waitForCallEnd } =
          await loadCalls();
        const source = audioSource(options);
        const observer =
          options.iceLog === undefined
            ? undefined
            : iceLog(options.iceLog, (message) => ctx.out.warn(message));
        const webrtc = loadWebRtc();
        const { client, self } = await ctx.openAccount(command, { webrtc });
        const labels = await ctx.names(client, self.accountId);

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
            ctx.out.warn(
              closedByRelay(event)?.message ??
                `the connection to the relay was lost (${event.code}); the call may not hear a hang-up`,
            );
        });
        // Held until the call's wait takes over: a Ctrl-C while the answer is sent hangs up.
        const signals = new HeldSignals(ctx.io.onSignal);
        let interrupted = false;
        const stopWaiting = signals.onSignal(() => {
          interrupted = true;
          rang(undefined);
        });
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          await client.connect();
          ctx.out.status(
            `waiting for a call (up to ${options.timeout} s) as device ${self.deviceId}; Ctrl-C stops`,
          );
          timer = setTimeout(() => rang(undefined), options.timeout * 1000);
          const call = await ringing;
          clearTimeout(timer);
          stopWaiting();
          if (!call)
            throw new CliError(
              interrupted
                ? 'no call: stopped before one came in'
                : `no call: none came in within ${options.timeout} s`,
              'NO_CALL',
            );
          ctx.out.status(`answering the call from ${labels.label(call.peer)}…`);
          const media = new CliCallMedia(source);
          try {
            await client.calls.accept({ media, ...(observer === undefined ? {} : { observer }) });
          } catch (error) {
            // It stopped ringing meanwhile (the caller hung up): its summary says why.
            media.stop();
            if (!(error instanceof CallError)) throw error;
          }
          const { summary, localHangup } = await waitForCallEnd(client, call.callId, {
            onSignal: signals.onSignal,
            onState: showCallState(labels),
          });
          media.stop();
          stopped = true;
          await client.disconnect();
          finishCall(summary, media, labels, options, localHangup);
        } finally {
          stopped = true;
          clearTimeout(timer);
          signals.close();
          unsubscribe();
        }
      },
    );
};
