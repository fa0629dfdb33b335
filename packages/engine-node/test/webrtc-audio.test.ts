import { describe, expect, it } from 'vitest';
import {
  analyseAudio,
  decodeWav,
  encodeWav,
  pcmSource,
  SAMPLE_RATE,
  silenceSource,
  toneSource,
  WavError,
} from '../src/index.ts';

/** The Node audio helpers that need no WebRTC: sources, analysis, WAV. */

const render = (source: ReturnType<typeof toneSource>, seconds: number): Int16Array => {
  const frame = new Int16Array(source.sampleRate / 100);
  const out = new Int16Array(Math.round(seconds * 100) * frame.length);
  for (let at = 0; at < out.length; at += frame.length) {
    source.next(frame);
    out.set(frame, at);
  }
  return out;
};

describe('audio analysis', () => {
  it('finds the frequency and level of a tone', () => {
    for (const hz of [220, 440, 1000, 3150]) {
      const { rms, dominantHz } = analyseAudio(render(toneSource(hz, 0.5), 1), SAMPLE_RATE);
      expect(Math.abs(dominantHz - hz), `${hz} Hz`).toBeLessThanOrEqual(1);
      // A sine's RMS is its peak over √2.
      expect(rms).toBeCloseTo(0.5 / Math.SQRT2, 2);
    }
  });

  it('finds the stronger of two tones, and reports silence as 0 Hz', () => {
    const low = render(toneSource(300, 0.1), 0.5);
    const high = render(toneSource(700, 0.4), 0.5);
    const mixed = low.map((sample, i) => sample + (high[i] as number));
    expect(Math.abs(analyseAudio(mixed, SAMPLE_RATE).dominantHz - 700)).toBeLessThanOrEqual(1);
    expect(analyseAudio(render(silenceSource(), 0.5), SAMPLE_RATE)).toEqual({
      rms: 0,
      dominantHz: 0,
    });
    expect(analyseAudio(new Int16Array(0), SAMPLE_RATE)).toEqual({ rms: 0, dominantHz: 0 });
  });
});

describe('WAV files', () => {
  it('round-trip mono 16-bit PCM', () => {
    const samples = render(toneSource(440), 0.2);
    const decoded = decodeWav(encodeWav(samples, SAMPLE_RATE));
    expect(decoded.sampleRate).toBe(SAMPLE_RATE);
    expect(decoded.samples).toEqual(samples);
  });

  it('keep the first channel of a stereo file and skip unknown chunks', () => {
    const mono = encodeWav(new Int16Array([1, 2, 3]), 16_000);
    // Rebuild as stereo with a LIST chunk before the data.
    const frames = [1, -1, 2, -2, 3, -3];
    const list = [...'LIST'].map((c) => c.charCodeAt(0)).concat([3, 0, 0, 0, 65, 66, 67, 0]);
    const bytes = new Uint8Array(36 + list.length + 8 + frames.length * 2);
    bytes.set(mono.subarray(0, 36));
    const view = new DataView(bytes.buffer);
    view.setUint16(22, 2, true);
    bytes.set(list, 36);
    const data = 36 + list.length;
    bytes.set(
      [...'data'].map((c) => c.charCodeAt(0)),
      data,
    );
    view.setUint32(data + 4, frames.length * 2, true);
    frames.forEach((sample, i) => view.setInt16(data + 8 + i * 2, sample, true));
    expect(decodeWav(bytes)).toEqual({ samples: new Int16Array([1, 2, 3]), sampleRate: 16_000 });
  });

  it('refuse what they cannot play, with a reason', () => {
    expect(() => decodeWav(new Uint8Array(10))).toThrow(WavError);
    const wav = encodeWav(new Int16Array(10), 22_050);
    expect(() => decodeWav(wav)).toThrow(/sample rate 22050/);
    const float = encodeWav(new Int16Array(10), SAMPLE_RATE);
    new DataView(float.buffer).setUint16(20, 3, true); // IEEE float
    expect(() => decodeWav(float)).toThrow(/16-bit PCM/);
    expect(() => decodeWav(encodeWav(new Int16Array(0), SAMPLE_RATE).subarray(0, 36))).toThrow(
      /without data/,
    );
  });

  it('play a file once then silence, or in a loop', () => {
    const samples = new Int16Array(SAMPLE_RATE / 100 + 5).fill(7);
    const once = render(pcmSource(samples, SAMPLE_RATE), 0.02);
    expect(once.filter((s) => s === 7).length).toBe(samples.length);
    const looped = render(pcmSource(samples, SAMPLE_RATE, true), 0.02);
    expect(looped.every((s) => s === 7)).toBe(true);
  });
});
