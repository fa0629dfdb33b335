import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { npmStart, requireCoturn, type NpmStart } from '@privcomm/server/testing';
import { removeTempDirs, RunningCli, runCli, tempDir, type CliResult } from './support/cli.ts';

/**
 * The README's walkthrough on `npm start` alone: a fresh DATA_DIR, no TURN_URLS, no hand-written
 * coturn configuration. The relay starts its development coturn (turnserver must be installed),
 * two CLI users register, add each other, exchange a message, and Alice calls Bob: he hears her
 * tone, through TURN, since they have not verified each other.
 */

const PROCESS_MS = 30_000;
const profiles = { alice: tempDir('qs-alice'), bob: tempDir('qs-bob') };
let dataDir: string;
let relay: NpmStart;

const cli = (profile: string, ...args: string[]): Promise<CliResult> =>
  runCli(['--profile', profile, ...args], { timeoutMs: PROCESS_MS });

const ok = async (profile: string, ...args: string[]): Promise<CliResult> => {
  const result = await cli(profile, ...args);
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result;
};

beforeAll(async () => {
  requireCoturn();
  dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-quick-start-'));
  relay = await npmStart({ DATA_DIR: dataDir });
}, 90_000);

afterAll(async () => {
  if (relay?.npm.exitCode === null) relay.npm.kill('SIGTERM');
  expect((await relay?.exit)?.code).toBe(0);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(`${dataDir}-secrets`, { recursive: true, force: true });
  removeTempDirs();
});

describe('the README walkthrough on `npm start` with its development coturn', () => {
  it('two CLI users exchange a message and make a call through TURN', async () => {
    expect(relay.output.join('')).toContain('development TURN server (coturn) started');
    const server = ['--server', relay.url];
    await ok(profiles.alice, ...server, 'register', '--name', 'Alice');
    await ok(profiles.bob, ...server, 'register', '--name', 'Bob');
    const idOf = async (profile: string): Promise<string> =>
      (await ok(profile, 'whoami', '--json')).json[0].accountId as string;
    const [aliceId, bobId] = [await idOf(profiles.alice), await idOf(profiles.bob)];
    await ok(profiles.alice, 'contacts', 'add', 'bob', bobId);
    await ok(profiles.bob, 'contacts', 'add', 'alice', aliceId);

    await ok(profiles.alice, 'send', 'bob', "Hi Bob, it's Alice");
    expect((await ok(profiles.bob, 'receive')).stdout).toContain("Hi Bob, it's Alice");

    const answer = RunningCli.start([
      '--profile',
      profiles.bob,
      'answer',
      '--json',
      '--timeout',
      '20',
    ]);
    try {
      await answer.until(
        () => answer.stderrLines.some((line) => line.startsWith('waiting for a call')),
        'answer is waiting',
      );
      const call = await ok(
        profiles.alice,
        '--json',
        'call',
        'bob',
        '--tone',
        '440',
        '--duration',
        '2',
      );
      expect(await answer.wait()).toBe(0);
      const [atAlice] = call.json;
      const [atBob] = answer.json;
      expect(atAlice).toMatchObject({ type: 'call-ended', connected: true, relay: true });
      expect(atBob).toMatchObject({ type: 'call-ended', connected: true, relay: true });
      expect(atBob.path).toEqual({ local: 'relay', remote: 'relay', transport: 'udp' });
      expect(Math.abs(atBob.dominantHz - 440)).toBeLessThanOrEqual(10);
    } finally {
      await answer.stop('SIGKILL');
    }
  }, 120_000);
});
