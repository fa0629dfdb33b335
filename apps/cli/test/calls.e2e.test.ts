import { readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyseAudio, decodeWav, encodeWav, SAMPLE_RATE, toneSource } from '@privcomm/engine-node';
import {
  createTestDatabase,
  dumpDatabase,
  spawnRelay,
  startCoturn,
  type Coturn,
  type RelayProcess,
} from '@privcomm/server/testing';
import { removeTempDirs, RunningCli, runCli, tempDir, type CliResult } from './support/cli.ts';

/**
 * Voice calls between two `privcomm` processes, end to end: one relay process whose TURN
 * credentials point at a throwaway coturn on loopback, and the CLI binary for every step
 * (alice calls, bob answers or turns the call away). Media really flows: the callee measures
 * the tone it heard. At the end, the relay's database and logs are searched for ICE candidates
 * and addresses.
 */

/** Every process of a call is killed (and the test fails) after this long. */
const PROCESS_MS = 20_000;

let database: { url: string; drop: () => Promise<void> };
let coturn: Coturn;
let relay: RelayProcess;
const running: RunningCli[] = [];
const profiles = { alice: tempDir('alice'), bob: tempDir('bob') };
let aliceId: string;
let bobId: string;

const cli = (profile: string, ...args: string[]): Promise<CliResult> =>
  runCli(['--profile', profile, ...args], { timeoutMs: PROCESS_MS });

const json = async (profile: string, ...args: string[]): Promise<any[]> => {
  const result = await cli(profile, '--json', ...args);
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.json;
};

const start = (profile: string, ...args: string[]): RunningCli => {
  const process = RunningCli.start(['--profile', profile, '--json', ...args]);
  running.push(process);
  return process;
};

/** Waits for a process to exit by itself, killing it (and failing) after PROCESS_MS. */
const exitOf = async (process: RunningCli): Promise<number | null> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), PROCESS_MS);
  });
  const result = await Promise.race([process.wait(), killed]);
  clearTimeout(timer);
  if (result === 'timeout') {
    await process.stop('SIGKILL');
    throw new Error(
      `the process did not exit within ${PROCESS_MS} ms\nstdout:\n${process.stdoutLines.join('\n')}\nstderr:\n${process.stderrLines.join('\n')}`,
    );
  }
  return result;
};

/**
 * The one error line of a failed call command: progress lines ("calling bob…") may come first
 * on stderr, the error is the last line and the only "privcomm: " line, with no stack trace.
 */
const errorLine = (result: { stderr: string }): string => {
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  const errors = lines.filter((line) => line.startsWith('privcomm: '));
  if (errors.length !== 1 || lines.at(-1) !== errors[0] || /\n\s+at /.test(result.stderr))
    throw new Error(`expected one "privcomm: " line at the end of stderr, got:\n${result.stderr}`);
  return errors[0]!;
};

/** `answer` that is connected and waiting. */
const answering = async (...args: string[]): Promise<RunningCli> => {
  const answer = start(profiles.bob, 'answer', '--timeout', '15', ...args);
  await answer.until(
    () => answer.stderrLines.some((line) => line.startsWith('waiting for a call')),
    'answer is waiting',
  );
  return answer;
};

/** `listen` that is connected, with its backlog handled. */
const listening = async (...args: string[]): Promise<RunningCli> => {
  const listen = start(profiles.bob, 'listen', ...args);
  await listen.untilJson((l) => l.type === 'queue-empty', 'listen connected');
  return listen;
};

const ended = (process: RunningCli) =>
  process.untilJson((l) => l.type === 'call-ended', 'call-ended', PROCESS_MS);

beforeAll(async () => {
  database = await createTestDatabase();
  coturn = await startCoturn();
  relay = await spawnRelay(database.url, {
    TURN_URLS: `turn:127.0.0.1:${coturn.port}?transport=udp`,
    TURN_SECRET: coturn.secret,
  });
  const [alice, bob] = await Promise.all([
    json(profiles.alice, '--server', relay.url, 'register'),
    json(profiles.bob, '--server', relay.url, 'register'),
  ]);
  aliceId = alice[0].accountId;
  bobId = bob[0].accountId;
  await Promise.all([
    json(profiles.alice, 'contacts', 'add', 'bob', bobId),
    json(profiles.bob, 'contacts', 'add', 'alice', aliceId),
  ]);
}, 60_000);

afterAll(async () => {
  for (const process of running) await process.stop('SIGKILL');
  await relay?.stop();
  await coturn?.stop();
  await database?.drop();
  removeTempDirs();
});

describe('voice calls between two CLI users', () => {
  it('relay-only: the callee hears the 440 Hz tone through TURN and records it', async () => {
    const recording = path.join(profiles.bob, 'heard.wav');
    const answer = await answering('--record', recording);
    const call = await cli(
      profiles.alice,
      '--json',
      'call',
      'bob',
      '--tone',
      '440',
      '--relay-only',
      '--duration',
      '2',
    );
    expect(call.code, call.stderr).toBe(0);
    expect(await exitOf(answer)).toBe(0);

    const [atAlice] = call.json;
    const [atBob] = answer.json;
    expect(atAlice).toMatchObject({
      type: 'call-ended',
      peer: bobId,
      contact: 'bob',
      direction: 'outgoing',
      reason: 'hung-up',
      connected: true,
      relay: true,
      relayOnly: true,
      path: { local: 'relay', remote: 'relay' },
    });
    expect(atBob).toMatchObject({
      type: 'call-ended',
      callId: atAlice.callId,
      peer: aliceId,
      contact: 'alice',
      direction: 'incoming',
      reason: 'hung-up',
      connected: true,
      relay: true,
      relayOnly: true,
      recorded: recording,
    });
    expect(atBob.durationMs).toBeGreaterThan(1000);
    expect(atBob.dominantHz).toBeGreaterThanOrEqual(430);
    expect(atBob.dominantHz).toBeLessThanOrEqual(450);
    expect(atBob.rms).toBeGreaterThan(0.05);
    // Alice sent a tone and heard silence.
    expect(atAlice.rms).toBeLessThan(0.01);

    // The recording holds more than a second of audio, and the tone is its strongest frequency.
    const heard = decodeWav(readFileSync(recording));
    expect(heard.samples.length).toBeGreaterThan(heard.sampleRate);
    const whole = analyseAudio(heard.samples, heard.sampleRate);
    expect(Math.abs(whole.dominantHz - 440)).toBeLessThanOrEqual(10);
  }, 60_000);

  it('direct: verified contacts connect without TURN, and --play sends a WAV file', async () => {
    await Promise.all([
      json(profiles.alice, 'verify', 'bob'),
      json(profiles.bob, 'verify', 'alice'),
    ]);
    const wav = path.join(profiles.alice, 'tone-880.wav');
    const samples = new Int16Array(SAMPLE_RATE * 10);
    toneSource(880).next(samples);
    writeFileSync(wav, encodeWav(samples, SAMPLE_RATE));

    const answer = await answering('--tone', '300');
    const call = await cli(
      profiles.alice,
      '--json',
      'call',
      'bob',
      '--play',
      wav,
      '--duration',
      '2',
    );
    expect(call.code, call.stderr).toBe(0);
    expect(await exitOf(answer)).toBe(0);
    const [atAlice] = call.json;
    const [atBob] = answer.json;
    for (const summary of [atAlice, atBob]) {
      expect(summary).toMatchObject({
        reason: 'hung-up',
        connected: true,
        relay: false,
        relayOnly: false,
        path: { local: 'host' },
      });
    }
    expect(Math.abs(atBob.dominantHz - 880)).toBeLessThanOrEqual(10);
    expect(Math.abs(atAlice.dominantHz - 300)).toBeLessThanOrEqual(10);
  }, 60_000);

  it('declined: listen --decline turns the call away; both sides say "declined"', async () => {
    const listen = await listening('--decline');
    const call = await cli(profiles.alice, '--json', 'call', 'bob');
    expect(call.code).toBe(1);
    expect(errorLine(call)).toBe('privcomm: bob declined the call');
    expect(call.json).toEqual([
      expect.objectContaining({ type: 'call-ended', reason: 'declined', connected: false }),
    ]);
    const atBob = await ended(listen);
    expect(atBob).toMatchObject({
      callId: call.json[0].callId,
      peer: aliceId,
      direction: 'incoming',
      reason: 'declined',
      connected: false,
      durationMs: 0,
    });
    expect(listen.json).toContainEqual({
      type: 'call',
      status: 'ringing',
      callId: atBob.callId,
      peer: aliceId,
      contact: 'alice',
      direction: 'incoming',
    });
    expect(await listen.stop('SIGINT')).toBe(0);
  }, 60_000);

  it('busy: listen --busy answers "busy"; both sides say "busy"', async () => {
    const listen = await listening('--busy');
    const call = await cli(profiles.alice, '--json', 'call', 'bob');
    expect(call.code).toBe(1);
    expect(errorLine(call)).toBe('privcomm: bob is busy (in another call); try again later');
    expect(call.json[0]).toMatchObject({ reason: 'busy', connected: false });
    expect(await ended(listen)).toMatchObject({
      callId: call.json[0].callId,
      reason: 'busy',
      connected: false,
    });
    expect(await listen.stop('SIGINT')).toBe(0);
  }, 60_000);

  it('no answer: the call rings until --ring-timeout; both sides say "no-answer"', async () => {
    const listen = await listening();
    const call = await cli(profiles.alice, '--json', 'call', 'bob', '--ring-timeout', '2');
    expect(call.code).toBe(1);
    expect(errorLine(call)).toBe(
      'privcomm: no answer from bob (the call rang until its time limit)',
    );
    expect(call.json[0]).toMatchObject({ reason: 'no-answer', connected: false });
    expect(call.json[0].endedAt - call.json[0].startedAt).toBeGreaterThanOrEqual(2000);
    const atBob = await ended(listen);
    expect(atBob).toMatchObject({ callId: call.json[0].callId, reason: 'no-answer' });
    expect(listen.json.some((l) => l.type === 'call' && l.status === 'ringing')).toBe(true);
    expect(await listen.stop('SIGINT')).toBe(0);
  }, 60_000);

  it('hang-up during setup: Ctrl-C while it rings ends it "hung-up" on both sides', async () => {
    const listen = await listening();
    const caller = start(profiles.alice, 'call', 'bob');
    await listen.untilJson((l) => l.type === 'call' && l.status === 'ringing', 'ringing');
    expect(await caller.stop('SIGINT')).toBe(1);
    expect(caller.json).toEqual([
      expect.objectContaining({ type: 'call-ended', reason: 'hung-up', connected: false }),
    ]);
    expect(errorLine({ stderr: caller.stderrLines.join('\n') })).toBe(
      'privcomm: you hung up before the call with bob connected',
    );
    expect(await ended(listen)).toMatchObject({
      callId: caller.json[0].callId,
      reason: 'hung-up',
      connected: false,
    });
    expect(await listen.stop('SIGINT')).toBe(0);
  }, 60_000);

  it('answer gives up after --timeout with "no call"; an unknown contact is one line', async () => {
    const [answer, unknown] = await Promise.all([
      cli(profiles.bob, '--json', 'answer', '--timeout', '1'),
      cli(profiles.alice, 'call', 'carol'),
    ]);
    expect(answer.code).toBe(1);
    expect(errorLine(answer)).toBe('privcomm: no call: none came in within 1 s');
    expect(answer.stdout).toBe('');
    expect(unknown.code).toBe(1);
    expect(errorLine(unknown)).toMatch(/^privcomm: no contact named "carol"/);
  }, 60_000);

  it('leaves no ICE candidate in the relay’s database and no address in its logs', async () => {
    const dump = await dumpDatabase(database.url);
    expect(dump).toContain(aliceId);
    expect(dump).not.toContain('candidate:');
    expect(dump).not.toContain('a=candidate');
    const logs = relay.logs.join('\n');
    // The logs are real (the relay logs no requests, by design: nothing to search there).
    expect(logs).toContain('relay listening');
    expect(logs).not.toMatch(/candidate/i);
    expect(logs).not.toMatch(/(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])/);
    // Every address of this machine (what host candidates carry), loopback included.
    const addresses = Object.values(networkInterfaces())
      .flat()
      .map((entry) => entry?.address)
      .filter((address): address is string => !!address && address !== '::1');
    expect(addresses).toContain('127.0.0.1');
    for (const address of addresses) {
      expect(logs, address).not.toContain(address);
      expect(dump, address).not.toContain(address);
    }
  });
});
