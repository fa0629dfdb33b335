import { createRequire } from 'node:module';
import type {
  CallMedia,
  MediaTrackLike,
  PeerConnectionConstructor,
  WebRtc,
} from '@privcomm/client';

/**
 * WebRTC for Node: `@roamhq/wrtc` (libwebrtc) behind the client core's W3C-shaped interfaces,
 * and audio without a sound card: a PCM source (a sine tone, a WAV file, silence) pushed as
 * 10 ms frames through wrtc's nonstandard RTCAudioSource, and a recorder on RTCAudioSink that
 * measures what arrived (RMS, dominant frequency). The CLI and the tests use these.
 *
 * wrtc is loaded on first use: messaging alone never loads the native library.
 */

interface AudioData {
  readonly samples: Int16Array;
  readonly sampleRate: number;
  readonly bitsPerSample?: number;
  readonly channelCount?: number;
  readonly numberOfFrames?: number;
}

interface Wrtc {
  readonly RTCPeerConnection: unknown;
  readonly nonstandard: {
    readonly RTCAudioSource: new () => {
      createTrack(): MediaTrackLike;
      onData(data: AudioData): void;
    };
    readonly RTCAudioSink: new (track: MediaTrackLike) => {
      stop(): void;
      ondata: ((data: AudioData) => void) | null;
    };
  };
}

let loaded: Wrtc | undefined;
const wrtc = (): Wrtc => {
  loaded ??= createRequire(import.meta.url)('@roamhq/wrtc') as Wrtc;
  return loaded;
};

/** libwebrtc's RTCPeerConnection, for `ClientDeps.calls.webrtc`. */
export const nodeWebRtc = (): WebRtc => ({
  RTCPeerConnection: wrtc().RTCPeerConnection as PeerConnectionConstructor,
});

/** The rate the sources produce and the tests expect (Opus runs at 48 kHz). */
export const SAMPLE_RATE = 48_000;
/** wrtc's audio source takes exactly 10 ms per frame. */
const FRAME_MS = 10;

/** Mono 16-bit PCM, produced 10 ms at a time. */
export interface PcmSource {
  readonly sampleRate: number;
  /** Fills `frame` (sampleRate / 100 samples) with the next 10 ms. */
  next(frame: Int16Array): void;
}

/** A sine at `hz`, `amplitude` of full scale. */
export const toneSource = (hz: number, amplitude = 0.3): PcmSource => {
  let n = 0;
  const step = (2 * Math.PI * hz) / SAMPLE_RATE;
  const peak = Math.round(amplitude * 32767);
  return {
    sampleRate: SAMPLE_RATE,
    next(frame) {
      for (let i = 0; i < frame.length; i += 1) frame[i] = Math.round(peak * Math.sin(step * n++));
      // Keep the phase small so that precision does not drift over long calls.
      n %= SAMPLE_RATE;
    },
  };
};

export const silenceSource = (sampleRate = SAMPLE_RATE): PcmSource => ({
  sampleRate,
  next(frame) {
    frame.fill(0);
  },
});

/** Plays `samples` once (then silence), or in a loop. */
export const pcmSource = (samples: Int16Array, sampleRate: number, loop = false): PcmSource => {
  let at = 0;
  return {
    sampleRate,
    next(frame) {
      for (let i = 0; i < frame.length; i += 1) {
        if (at >= samples.length && loop && samples.length > 0) at = 0;
        frame[i] = at < samples.length ? (samples[at++] as number) : 0;
      }
    },
  };
};

/** Pushes a source into a wrtc audio track in real time, catching up after a late timer. */
export class AudioSender {
  readonly track: MediaTrackLike;
  private readonly timer: ReturnType<typeof setInterval>;
  private sent = 0;
  private readonly started = Date.now();

  constructor(source: PcmSource) {
    const audio = new (wrtc().nonstandard.RTCAudioSource)();
    this.track = audio.createTrack();
    const frameLength = source.sampleRate / (1000 / FRAME_MS);
    this.timer = setInterval(() => {
      const due = Math.floor((Date.now() - this.started) / FRAME_MS) + 1;
      // After a long stall, skip ahead rather than flood the encoder.
      if (due - this.sent > 20) this.sent = due - 20;
      while (this.sent < due) {
        const samples = new Int16Array(frameLength);
        source.next(samples);
        audio.onData({
          samples,
          sampleRate: source.sampleRate,
          bitsPerSample: 16,
          channelCount: 1,
          numberOfFrames: frameLength,
        });
        this.sent += 1;
      }
    }, FRAME_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.track.stop();
  }
}

export interface AudioAnalysis {
  /** Root mean square, as a fraction of full scale (0 to 1). */
  readonly rms: number;
  /** The strongest frequency between 50 Hz and 4 kHz, to 0.5 Hz; 0 for silence. */
  readonly dominantHz: number;
}

/** Power of `frequency` in the (windowed) samples: the Goertzel algorithm. */
const power = (samples: Float64Array, sampleRate: number, frequency: number): number => {
  const coefficient = 2 * Math.cos((2 * Math.PI * frequency) / sampleRate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < samples.length; i += 1) {
    const s = (samples[i] as number) + coefficient * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  return s1 * s1 + s2 * s2 - coefficient * s1 * s2;
};

/** RMS and dominant frequency (a coarse Goertzel scan, then a fine one around the peak). */
export const analyseAudio = (
  samples: Int16Array,
  sampleRate: number,
  range: { minHz?: number; maxHz?: number } = {},
): AudioAnalysis => {
  if (samples.length === 0) return { rms: 0, dominantHz: 0 };
  let sum = 0;
  for (const sample of samples) sum += (sample / 32768) ** 2;
  const rms = Math.sqrt(sum / samples.length);
  if (rms < 1e-4) return { rms, dominantHz: 0 };
  // A Hann window keeps a strong tone from leaking into its neighbours.
  const windowed = new Float64Array(samples.length);
  for (let i = 0; i < samples.length; i += 1) {
    const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / Math.max(1, samples.length - 1));
    windowed[i] = ((samples[i] as number) / 32768) * hann;
  }
  const minHz = range.minHz ?? 50;
  const maxHz = Math.min(range.maxHz ?? 4000, sampleRate / 2);
  const peak = (from: number, to: number, step: number, start: number): number => {
    let best = start;
    let bestPower = -1;
    for (let f = from; f <= to; f += step) {
      const p = power(windowed, sampleRate, f);
      if (p > bestPower) {
        bestPower = p;
        best = f;
      }
    }
    return best;
  };
  const coarse = peak(minHz, maxHz, 5, minHz);
  const fine = peak(Math.max(minHz, coarse - 5), Math.min(maxHz, coarse + 5), 0.5, coarse);
  return { rms, dominantHz: fine };
};

/** Records a received track (mono: the first channel), up to `maxSeconds`. */
export class AudioRecorder {
  private readonly chunks: Int16Array[] = [];
  private length = 0;
  private rate = SAMPLE_RATE;
  private readonly sink: { stop(): void; ondata: ((data: AudioData) => void) | null };
  private stopped = false;

  constructor(
    track: MediaTrackLike,
    private readonly maxSeconds = 600,
  ) {
    this.sink = new (wrtc().nonstandard.RTCAudioSink)(track);
    this.sink.ondata = (data) => this.add(data);
  }

  private add(data: AudioData): void {
    if (this.stopped) return;
    this.rate = data.sampleRate;
    if (this.length >= this.maxSeconds * this.rate) return;
    const channels = data.channelCount ?? 1;
    const frames = data.samples.length / channels;
    const mono = new Int16Array(frames);
    for (let i = 0; i < frames; i += 1) mono[i] = data.samples[i * channels] as number;
    this.chunks.push(mono);
    this.length += frames;
  }

  get sampleRate(): number {
    return this.rate;
  }

  /** Seconds of audio received so far. */
  get seconds(): number {
    return this.length / this.rate;
  }

  /** Everything received, or the last `seconds` of it. */
  samples(seconds?: number): Int16Array {
    const all = new Int16Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    if (seconds === undefined) return all;
    return all.subarray(Math.max(0, all.length - Math.round(seconds * this.rate)));
  }

  /** RMS over everything received; the dominant frequency over the last second. */
  analyse(): AudioAnalysis {
    const { rms } = analyseAudio(this.samples(), this.rate);
    const { dominantHz } = analyseAudio(this.samples(1), this.rate);
    return { rms, dominantHz };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.sink.ondata = null;
    this.sink.stop();
  }
}

/**
 * A call's audio in Node: `source` is sent as the microphone, and what the peer sends is
 * recorded (and can be analysed or written as WAV once the call ended).
 */
export class NodeCallMedia implements CallMedia {
  private readonly sender: AudioSender;
  private recorderValue: AudioRecorder | undefined;

  constructor(
    source: PcmSource = silenceSource(),
    private readonly maxRecordSeconds = 600,
  ) {
    this.sender = new AudioSender(source);
  }

  get track(): MediaTrackLike {
    return this.sender.track;
  }

  /** The recorder of the peer's audio, once it arrived. */
  get recorder(): AudioRecorder | undefined {
    return this.recorderValue;
  }

  onRemoteTrack(track: MediaTrackLike): void {
    if (track.kind !== 'audio' || this.recorderValue) return;
    this.recorderValue = new AudioRecorder(track, this.maxRecordSeconds);
  }

  /** What arrived so far (silence if nothing did). */
  analyse(): AudioAnalysis {
    return this.recorderValue?.analyse() ?? { rms: 0, dominantHz: 0 };
  }

  stop(): void {
    this.sender.stop();
    this.recorderValue?.stop();
  }
}

// ---- WAV (PCM 16-bit) for --play and --record ----------------------------------------------

/** A mono 16-bit PCM WAV file. */
export const encodeWav = (samples: Int16Array, sampleRate: number): Uint8Array => {
  const bytes = new Uint8Array(44 + samples.length * 2);
  const view = new DataView(bytes.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i += 1) view.setUint8(offset + i, text.charCodeAt(i));
  };
  ascii(0, 'RIFF');
  view.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  ascii(36, 'data');
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i += 1) view.setInt16(44 + i * 2, samples[i] as number, true);
  return bytes;
};

export class WavError extends Error {
  override readonly name = 'WavError';
}

/**
 * Reads a PCM 16-bit WAV file (any channel count: the first channel is kept). Its rate must be
 * one wrtc takes in 10 ms frames (a multiple of 100 Hz: 8, 16, 32, 44.1, 48 kHz …).
 */
export const decodeWav = (bytes: Uint8Array): { samples: Int16Array; sampleRate: number } => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ascii = (offset: number, length: number) =>
    String.fromCharCode(...bytes.subarray(offset, offset + length));
  if (bytes.length < 12 || ascii(0, 4) !== 'RIFF' || ascii(8, 4) !== 'WAVE')
    throw new WavError('not a WAV file');
  let format: { channels: number; sampleRate: number; bits: number; pcm: boolean } | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = ascii(offset, 4);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === 'fmt ' && size >= 16) {
      format = {
        pcm: view.getUint16(body, true) === 1,
        channels: view.getUint16(body + 2, true),
        sampleRate: view.getUint32(body + 4, true),
        bits: view.getUint16(body + 14, true),
      };
    } else if (id === 'data') {
      if (!format) throw new WavError('WAV data before its format');
      if (!format.pcm || format.bits !== 16 || format.channels < 1)
        throw new WavError('only 16-bit PCM WAV files can be played');
      if (format.sampleRate % 100 !== 0 || format.sampleRate < 8000 || format.sampleRate > 48000)
        throw new WavError(`unsupported sample rate ${format.sampleRate} Hz`);
      const end = Math.min(bytes.length, body + size);
      const frames = Math.floor((end - body) / (2 * format.channels));
      const samples = new Int16Array(frames);
      for (let i = 0; i < frames; i += 1)
        samples[i] = view.getInt16(body + i * 2 * format.channels, true);
      return { samples, sampleRate: format.sampleRate };
    }
    offset = body + size + (size % 2);
  }
  throw new WavError('WAV file without data');
};
