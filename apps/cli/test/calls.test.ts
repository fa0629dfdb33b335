import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SAMPLE_RATE, toneSource } from '@privcomm/engine-node';
import { analyseHeard, audioSource, HeldSignals, iceLog } from '../src/calls.ts';
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

describe('iceLog (--ice-log)', () => {
  it('writes one JSON line per candidate to a file only the user can read', () => {
    const file = path.join(tempDir('ice'), 'ice.jsonl');
    writeFileSync(file, 'an older log');
    const warnings: string[] = [];
    const log = iceLog(file, (message) => warnings.push(message));
    log.candidate(
      'sent',
      'candidate:1 1 udp 41885439 203.0.113.3 3554 typ relay raddr 0.0.0.0 rport 0',
    );
    log.candidate('received', 'candidate:2 1 udp 41885439 203.0.113.3 3555 typ relay');
    expect(
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
    ).toEqual([
      {
        direction: 'sent',
        candidate: 'candidate:1 1 udp 41885439 203.0.113.3 3554 typ relay raddr 0.0.0.0 rport 0',
      },
      { direction: 'received', candidate: 'candidate:2 1 udp 41885439 203.0.113.3 3555 typ relay' },
    ]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(warnings).toEqual([]);
  });

  it('refuses a path it cannot write before the call, with a code', () => {
    const file = path.join(tempDir('ice'), 'no-such-dir', 'ice.jsonl');
    expect(() => iceLog(file, () => undefined)).toThrow(
      expect.objectContaining({ code: 'ICE_LOG_FAILED', message: expect.stringContaining(file) }),
    );
  });
});

describe('HeldSignals (Ctrl-C while a call is placed or answered)', () => {
  /** A stand-in for process.on('SIGINT'): the handlers registered, and a way to raise one. */
  const processSignals = () => {
    const handlers = new Set<() => void>();
    return {
      handlers,
      onSignal: (handler: () => void) => {
        handlers.add(handler);
        return () => handlers.delete(handler);
      },
      raise: () => handlers.forEach((handler) => handler()),
    };
  };

  it('keeps a signal that comes before a handler is set and hands it over once, at once', () => {
    const io = processSignals();
    const held = new HeldSignals(io.onSignal);
    io.raise();
    const calls: string[] = [];
    held.onSignal(() => calls.push('hang up'));
    expect(calls).toEqual(['hang up']);
    held.onSignal(() => calls.push('second handler'));
    expect(calls).toEqual(['hang up']);
  });

  it('passes signals to the current handler only, and gives them back on close', () => {
    const io = processSignals();
    const held = new HeldSignals(io.onSignal);
    const calls: string[] = [];
    const removeFirst = held.onSignal(() => calls.push('stop waiting'));
    io.raise();
    removeFirst();
    const removeSecond = held.onSignal(() => calls.push('hang up'));
    removeFirst();
    io.raise();
    expect(calls).toEqual(['stop waiting', 'hang up']);
    removeSecond();
    expect(io.handlers.size).toBe(1);
    held.close();
    expect(io.handlers.size).toBe(0);
  });
});
