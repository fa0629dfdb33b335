import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SAMPLE_RATE, toneSource } from '@privcomm/engine-node';
import { analyseHeard, audioSource } from '../src/calls.ts';
import { CliError, UsageError } from '../src/errors.ts';
import { removeTempDirs, tempDir } from './support/cli.ts';

/** The audio helpers of `call` and `answer`, without a call. */

afterAll(() => removeTempDirs());

const tone = (hz: number, seconds: number): Int16Array => {
  const samples = new Int16Array(Math.round(SAMPLE_RATE * seconds));
  toneSource(hz).next(samples);
  return samples;
};

const concat = (...parts: Int16Array[]): Int16Array => {
  const all = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
};

describe('analyseHeard', () => {
  it('finds the tone even when silence follows it (the wait for the hang-up)', () => {
    const heard = analyseHeard(
      concat(tone(440, 2), new Int16Array(SAMPLE_RATE * 1.5)),
      SAMPLE_RATE,
    );
    expect(Math.abs(heard.dominantHz - 440)).toBeLessThanOrEqual(1);
    expect(heard.rms).toBeGreaterThan(0.1);
  });

  it('reports the last second of sound, not an earlier one', () => {
    const heard = analyseHeard(concat(tone(300, 2), tone(1000, 1.2)), SAMPLE_RATE);
    expect(Math.abs(heard.dominantHz - 1000)).toBeLessThanOrEqual(1);
  });

  it('says 0 Hz for silence and for nothing at all', () => {
    expect(analyseHeard(new Int16Array(SAMPLE_RATE), SAMPLE_RATE)).toEqual({
      rms: 0,
      dominantHz: 0,
    });
    expect(analyseHeard(new Int16Array(0), SAMPLE_RATE)).toEqual({ rms: 0, dominantHz: 0 });
  });
});

describe('audioSource', () => {
  it('refuses --tone with --play, a missing file and a file that is not WAV', () => {
    expect(() => audioSource({ tone: 440, play: 'x.wav' })).toThrow(UsageError);
    const dir = tempDir('audio');
    expect(() => audioSource({ play: path.join(dir, 'missing.wav') })).toThrow(CliError);
    const text = path.join(dir, 'text.wav');
    writeFileSync(text, 'not audio at all');
    expect(() => audioSource({ play: text })).toThrow(/not a WAV file/);
  });
});
