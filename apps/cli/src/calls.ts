import { appendFileSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import type {
  CallMedia,
  CallObserver,
  CallSummary,
  ClientEvent,
  MediaTrackLike,
  PrivcommClient,
  WebRtc,
} from '@privcomm/client';
import {
  analyseAudio,
  decodeWav,
  encodeWav,
  NodeCallMedia,
  nodeWebRtc,
  pcmSource,
  SAMPLE_RATE,
  silenceSource,
  toneSource,
  type AudioAnalysis,
  type PcmSource,
} from '@privcomm/engine-node';
import { CliError, UsageError } from './errors.ts';

/**
 * What `call` and `answer` share: the audio given on the command line (a tone, a WAV file or
 * silence as the microphone; the peer's audio analysed and optionally recorded), and the wait
 * for a call to end, hanging up on a signal or after a duration.
 */

export interface AudioOptions {
  tone?: number;
  play?: string;
  record?: string;
}

/** libwebrtc, loaded now: only the call commands need the native library. */
export const loadWebRtc = (): WebRtc => {
  try {
    return nodeWebRtc();
  } catch (error) {
    const why = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    throw new CliError(
      `voice calls need the WebRTC library @roamhq/wrtc, which could not be loaded (${why}); reinstall with "npm ci"`,
      'WEBRTC_UNAVAILABLE',
    );
  }
};

/** The microphone of the call: --tone, --play or silence. Reads the file now, before the call. */
export const audioSource = (options: AudioOptions): PcmSource => {
  if (options.tone !== undefined && options.play !== undefined)
    throw new UsageError('give --tone or --play, not both');
  if (options.tone !== undefined) return toneSource(options.tone);
  if (options.play !== undefined) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(options.play);
    } catch (error) {
      throw new CliError(
        `cannot read ${options.play} (${(error as NodeJS.ErrnoException).code ?? 'error'}); --play takes a WAV file`,
        'BAD_AUDIO_FILE',
      );
    }
    const { samples, sampleRate } = decodeWav(bytes);
    return pcmSource(samples, sampleRate);
  }
  return silenceSource();
};

/** Below this RMS (about -60 dBFS) a 10 ms frame counts as silence. */
const SILENT_FRAME_RMS = 0.001;

/**
 * What was heard: the RMS over everything received, and the strongest frequency over the last
 * second of sound. Trailing silence is left out of the latter: between the peer's last packet and
 * its hang-up reaching this side, the receiver plays silence (or a fading copy of the last sound).
 */
export const analyseHeard = (samples: Int16Array, sampleRate: number): AudioAnalysis => {
  const { rms } = analyseAudio(samples, sampleRate);
  const frame = Math.max(1, Math.round(sampleRate / 100));
  let end = samples.length;
  while (end >= frame) {
    let sum = 0;
    for (let i = end - frame; i < end; i += 1) sum += ((samples[i] as number) / 32768) ** 2;
    if (Math.sqrt(sum / frame) >= SILENT_FRAME_RMS) break;
    end -= frame;
  }
  const { dominantHz } = analyseAudio(
    samples.subarray(Math.max(0, end - sampleRate), end),
    sampleRate,
  );
  return { rms, dominantHz };
};

/**
 * The call's audio: the source is sent, the peer's audio recorded. The analysis is taken when
 * the call releases its media (before anything else stops), and stop may be called twice.
 */
export class CliCallMedia implements CallMedia {
  private readonly inner: NodeCallMedia;
  private stopped = false;
  private heardValue: AudioAnalysis | undefined;

  constructor(source: PcmSource) {
    this.inner = new NodeCallMedia(source);
  }

  get track(): MediaTrackLike {
    return this.inner.track;
  }

  onRemoteTrack(track: MediaTrackLike): void {
    this.inner.onRemoteTrack(track);
  }

  /** RMS over everything received, dominant frequency over its last second of sound. */
  get heard(): AudioAnalysis {
    return this.heardValue ?? this.analyse();
  }

  private analyse(): AudioAnalysis {
    const recorder = this.inner.recorder;
    return recorder
      ? analyseHeard(recorder.samples(), recorder.sampleRate)
      : { rms: 0, dominantHz: 0 };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.heardValue = this.analyse();
    this.inner.stop();
  }

  /** Writes what was received (nothing: an empty WAV) to `file`. */
  record(file: string): void {
    const recorder = this.inner.recorder;
    const samples = recorder?.samples() ?? new Int16Array(0);
    try {
      writeFileSync(file, encodeWav(samples, recorder?.sampleRate ?? SAMPLE_RATE), {
        mode: 0o600,
      });
    } catch (error) {
      throw new CliError(
        `cannot write the recording to ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        'RECORD_FAILED',
      );
    }
  }
}

/**
 * --ice-log: every ICE candidate the call sent and received, one JSON line each
 * (`{"direction":"received","candidate":"candidate:…"}`), to see why a call took the path it
 * did. Addresses are in it, so the file is the user's only (mode 0600). Created (emptied) before
 * the call, so that a path that cannot be written fails at once.
 */
export const iceLog = (file: string, warn: (message: string) => void): CallObserver => {
  const fail = (error: unknown): CliError =>
    new CliError(
      `cannot write the ICE log to ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      'ICE_LOG_FAILED',
    );
  try {
    writeFileSync(file, '', { mode: 0o600 });
    // The mode applies only to a new file: an existing one keeps its own unless changed.
    chmodSync(file, 0o600);
  } catch (error) {
    throw fail(error);
  }
  return {
    candidate: (direction, candidate) => {
      // A diagnostic must not end the call: a write that fails later is only warned about.
      try {
        appendFileSync(file, `${JSON.stringify({ direction, candidate })}\n`);
      } catch (error) {
        warn(fail(error).message);
      }
    },
  };
};

/**
 * SIGINT and SIGTERM, held from the moment a call is being placed or answered. Until the wait for
 * the call's end takes over, a signal is kept rather than left to Node's default (which would end
 * the process with no hang-up sent, while the peer's phone rings on): the peer sees the offer
 * before `calls.start` resolves on this side, so a Ctrl-C can come in that gap.
 */
export class HeldSignals {
  private handler: (() => void) | undefined;
  private pending = false;
  private readonly release: () => void;

  constructor(onSignal: (handler: () => void) => () => void) {
    this.release = onSignal(() => {
      if (this.handler) this.handler();
      else this.pending = true;
    });
  }

  /** The shape of `Io.onSignal`; a signal kept while no handler was set is handed over at once. */
  readonly onSignal = (handler: () => void): (() => void) => {
    this.handler = handler;
    if (this.pending) {
      this.pending = false;
      handler();
    }
    return () => {
      if (this.handler === handler) this.handler = undefined;
    };
  };

  /** Gives the signals back to whoever had them before. */
  close(): void {
    this.release();
  }
}

export interface CallWaitOptions {
  /** Hang up this long after the call connected. */
  readonly durationMs?: number;
  /** Registers a handler for SIGINT and SIGTERM; returns its removal. */
  readonly onSignal: (handler: () => void) => () => void;
  /** Called on every state change of this call (progress for people). */
  readonly onState?: (event: Extract<ClientEvent, { type: 'call' }>) => void;
}

export interface CallOutcome {
  readonly summary: CallSummary;
  /** This side ended the call (signal or duration). */
  readonly localHangup: boolean;
}

/** Waits for the call to end: hangs up after the duration once connected, or on a signal. */
export const waitForCallEnd = async (
  client: PrivcommClient,
  callId: string,
  options: CallWaitOptions,
): Promise<CallOutcome> => {
  let localHangup = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hangup = () => {
    const state = client.calls.state;
    if (state.status === 'idle' || state.status === 'ended' || state.call.callId !== callId) return;
    localHangup = true;
    void client.calls.hangup().catch(() => undefined);
  };
  const onConnected = () => {
    if (options.durationMs === undefined || timer !== undefined) return;
    timer = setTimeout(hangup, options.durationMs);
  };
  const unsubscribe = client.subscribe((event) => {
    if (event.type !== 'call' || event.state.status === 'idle') return;
    if (event.state.call.callId !== callId) return;
    options.onState?.(event);
    if (event.state.status === 'connected') onConnected();
  });
  const current = client.calls.state;
  if (current.status === 'connected' && current.call.callId === callId) onConnected();
  const removeSignal = options.onSignal(hangup);
  try {
    const summary = await client.calls.whenEnded(callId);
    return { summary, localHangup };
  } finally {
    clearTimeout(timer);
    removeSignal();
    unsubscribe();
  }
};
