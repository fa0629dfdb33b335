import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startRelay, type TestRelay } from '@privcomm/server/testing';
import {
  expectOneErrorLine,
  removeTempDirs,
  runCli,
  tempDir,
  registerProfiles,
} from './support/cli.ts';

/**
 * Terminal injection: what a contact sends (a text) and names (a contact's name, which may come
 * from another device's contact sync) must not drive the terminal. Human output shows every
 * control character escaped; --json carries the exact text. Real relay, real binary.
 */

/** Clears the screen, recolours, sets the clipboard (OSC 52), moves the cursor, flips text. */
const HOSTILE_TEXT =
  'hi\x1b[2J\x1b[31mred\x1b]52;c;ZXZpbA==\x07\x1b[1A\rbob → you: forged\nsecond line\u202eevil\x7f\x9b';
const HOSTILE_NAME = 'mallory\x1b[32m\r\nalice → you: ok\u202e';

let relay: TestRelay;
let drop: () => Promise<void>;
const alice = tempDir('alice');
const bob = tempDir('bob');
let aliceId: string;
let bobId: string;
/** What `contacts add` printed for the hostile name. */
let addedOutput = '';

/** Any character a terminal would act on (C0 but nothing, DEL, C1, bidi controls). */
const CONTROL =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** The output lines, each free of control characters. */
const safeLines = (text: string): string[] => {
  const lines = text.split('\n').filter((line) => line !== '');
  for (const line of lines) expect(line, JSON.stringify(line)).not.toMatch(CONTROL);
  return lines;
};

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
  [aliceId, bobId] = await registerProfiles(relay.url, alice, bob);
  // Bob knows alice under a hostile name (as a contact sync from a compromised device would set).
  const added = await runCli(['--profile', bob, 'contacts', 'add', HOSTILE_NAME, aliceId]);
  expect(added.code, added.stderr).toBe(0);
  addedOutput = added.stdout;
  const sent = await runCli(['--profile', alice, 'send', bobId, HOSTILE_TEXT]);
  expect(sent.code, sent.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await relay?.close();
  await drop?.();
  removeTempDirs();
});

describe('hostile texts and names', () => {
  it('receive shows them escaped, on one line', async () => {
    const result = await runCli(['--profile', bob, 'receive', '--timeout', '0']);
    expect(result.code, result.stderr).toBe(0);
    const lines = safeLines(result.stdout);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(
      String.raw`mallory\x1b[32m\r\nalice → you: ok\u202e → you: hi\x1b[2J\x1b[31mred\x1b]52;c;ZXZpbA==\x07\x1b[1A\rbob → you: forged\nsecond line\u202eevil\x7f\x9b`,
    );
    safeLines(result.stderr);
  });

  it('contacts add shows the name escaped', () => {
    expect(safeLines(addedOutput)).toEqual([
      String.raw`Added mallory\x1b[32m\r\nalice → you: ok\u202e (${aliceId}).`,
    ]);
  });

  it('history and contacts list show them escaped; --json keeps them exact', async () => {
    const history = await runCli(['--profile', bob, 'history', aliceId, '--no-read']);
    expect(history.code, history.stderr).toBe(0);
    expect(safeLines(history.stdout)).toHaveLength(1);
    const list = await runCli(['--profile', bob, 'contacts', 'list']);
    expect(safeLines(list.stdout)).toEqual([
      String.raw`mallory\x1b[32m\r\nalice → you: ok\u202e  ${aliceId}`,
    ]);

    const json = await runCli(['--profile', bob, '--json', 'history', aliceId, '--no-read']);
    expect(json.json).toMatchObject([{ text: HOSTILE_TEXT, contact: HOSTILE_NAME }]);
    const contacts = await runCli(['--profile', bob, '--json', 'contacts', 'list']);
    expect(contacts.json).toMatchObject([{ name: HOSTILE_NAME, accountId: aliceId }]);
  });

  it('error messages show them escaped', async () => {
    const result = await runCli(['--profile', alice, 'send', HOSTILE_NAME, 'hi']);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toBe(
      String.raw`privcomm: no contact named "mallory\x1b[32m\r\nalice → you: ok\u202e"; add one with: contacts add NAME ACCOUNT_ID`,
    );
    // A usage error repeats the argument too.
    const usage = await runCli(['--profile', alice, 'contacts', 'add', 'x', HOSTILE_NAME]);
    expect(usage.code).toBe(2);
    safeLines(usage.stderr);
  });
});

// The sender's own history, as a baseline that nothing is lost on the way.
describe('the sender', () => {
  it('keeps the exact text too', async () => {
    const json = await runCli(['--profile', alice, '--json', 'history', bobId, '--no-read']);
    expect(json.json).toMatchObject([{ text: HOSTILE_TEXT, direction: 'out' }]);
  });
});
