import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestDatabase,
  DISCOVERY_KEY,
  dumpDatabase,
  spawnRelay,
  type RelayProcess,
} from '@privcomm/server/testing';
import {
  expectOneErrorLine,
  removeTempDirs,
  runCli,
  tempDir,
  type CliResult,
} from './support/cli.ts';

/**
 * The "Done means" for phone-number discovery, end to end: a relay process on a real
 * PostgreSQL, and the `privcomm` binary for every step. Two users register with their numbers,
 * find each other by number and exchange a message; an unregistered number is reported as such;
 * then the relay's database dump and logs are searched for every common form of the numbers,
 * their SHA-256 and SHA-1 hashes and the OPRF inputs.
 */

let database: { url: string; drop: () => Promise<void> };
let relay: RelayProcess;
/** Every relay process of the run, for the final search of their logs. */
const relayLogs: string[][] = [];

const profiles = { alice: tempDir('alice'), bob: tempDir('bob'), carol: tempDir('carol') };
/** National number 555 123 0001 etc.: fictional, and "possible" for the US. */
const numbers = { alice: '+15551230001', bob: '+15551230002', nobody: '+15551230009' };
let aliceId: string;
let bobId: string;

const cli = (profile: string, ...args: string[]): Promise<CliResult> =>
  runCli(['--profile', profile, '--server', relay.url, ...args]);

const json = async (profile: string, ...args: string[]): Promise<any[]> => {
  const result = await cli(profile, '--json', ...args);
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.json;
};

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await spawnRelay(database.url);
  relayLogs.push(relay.logs);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await database?.drop();
  removeTempDirs();
});

describe('finding people by phone number', () => {
  it('registers with a number, or publishes one later, without leaving an account behind for a wrong number', async () => {
    const wrong = await cli(profiles.alice, 'register', '--phone', '12');
    expect(wrong.code).toBe(2);
    expect(expectOneErrorLine(wrong)).toMatch(/invalid phone number/);
    const noCountry = await cli(profiles.alice, 'register', '--phone', '555 123 0001');
    expect(noCountry.code).toBe(2);
    expect(noCountry.stderr).toMatch(/country code/);
    // Refused before anything was created: the profile has no account.
    expect((await cli(profiles.alice, 'whoami')).stderr).toMatch(/no profile|no account/);

    const [registered, published] = await json(
      profiles.alice,
      'register',
      '--phone',
      numbers.alice,
    );
    aliceId = registered.accountId;
    expect(published).toEqual({ type: 'phone-published', number: numbers.alice, keyVersion: 1 });

    [{ accountId: bobId }] = await json(profiles.bob, 'register');
    // A national spelling with its country gives the same E.164 number.
    const [set] = await json(profiles.bob, 'phone', 'set', '(555) 123-0002', '--country', 'US');
    expect(set).toMatchObject({ type: 'phone-published', number: numbers.bob });
    expect(await json(profiles.bob, 'phone', 'show')).toEqual([
      { number: numbers.bob, published: true, keyVersion: 1 },
    ]);
    await json(profiles.carol, 'register');
  });

  it('finds each other by number and exchange a message', async () => {
    const [added] = await json(
      profiles.alice,
      'contacts',
      'add',
      'bob',
      '--phone',
      '+1 555-123-0002',
    );
    expect(added).toMatchObject({ name: 'bob', accountId: bobId });
    const [sent] = await json(profiles.alice, 'send', 'bob', 'found you by your number');
    expect(sent).toMatchObject({ type: 'sent' });

    // Bob imports his address book: alice (national form, with --country) and someone not on privcomm.
    const vcard = path.join(profiles.bob, 'contacts.vcf');
    writeFileSync(
      vcard,
      [
        'BEGIN:VCARD',
        'VERSION:3.0',
        'FN:Alice Example',
        'TEL;TYPE=CELL:(555) 123-0001',
        'END:VCARD',
        'BEGIN:VCARD',
        'VERSION:3.0',
        'FN:Nobody',
        `TEL:${numbers.nobody}`,
        'END:VCARD',
        '',
      ].join('\r\n'),
    );
    const synced = await json(profiles.bob, 'contacts', 'sync', vcard, '--country', 'US');
    expect(synced).toEqual([
      { type: 'contact-added', name: 'Alice Example', accountId: aliceId },
      { type: 'phone-not-found', name: 'Nobody' },
    ]);
    const received = await json(profiles.bob, 'receive', '--timeout', '1');
    expect(received).toContainEqual(
      expect.objectContaining({
        type: 'message',
        contact: 'Alice Example',
        text: 'found you by your number',
      }),
    );
    const [reply] = await json(profiles.bob, 'send', 'Alice Example', 'hello back');
    expect(reply).toMatchObject({ type: 'sent' });
    expect(await json(profiles.alice, 'receive', '--timeout', '1')).toContainEqual(
      expect.objectContaining({ type: 'message', contact: 'bob', text: 'hello back' }),
    );
  });

  it('reports a number nobody registered, and one whose owner removed it', async () => {
    const unknown = await cli(
      profiles.carol,
      '--json',
      'contacts',
      'add',
      'x',
      '--phone',
      numbers.nobody,
    );
    expect(unknown.code).toBe(1);
    expect(expectOneErrorLine(unknown)).toMatch(/is not registered on this relay/);

    await json(profiles.bob, 'phone', 'remove');
    const removed = await cli(profiles.carol, 'contacts', 'add', 'bob', '--phone', numbers.bob);
    expect(removed.code).toBe(1);
    expect(removed.stderr).toMatch(/not registered on this relay/);
    expect(await json(profiles.bob, 'phone', 'show')).toEqual([
      { number: null, published: false, keyVersion: 1 },
    ]);
    const [found] = await json(
      profiles.carol,
      'contacts',
      'add',
      'alice',
      '--phone',
      numbers.alice,
    );
    expect(found).toMatchObject({ accountId: aliceId });
    await json(profiles.bob, 'phone', 'set', numbers.bob);
  });

  it('after a key rotation, keeps everyone findable while their clients publish again', async () => {
    // The operator rotates (as `npm run admin -- discovery rotate-key` prints) and restarts.
    const newKey = `2:${randomBytes(32).toString('base64')}`;
    await relay.stop();
    relay = await spawnRelay(database.url, {
      DISCOVERY_KEY: newKey,
      DISCOVERY_PREVIOUS_KEY: DISCOVERY_KEY,
      DISCOVERY_PREVIOUS_KEY_UNTIL: new Date(Date.now() + 86_400_000).toISOString(),
    });
    relayLogs.push(relay.logs);
    // Grace period: bob has not published again yet, and is still found.
    const [found] = await json(profiles.carol, 'contacts', 'add', 'bob', '--phone', numbers.bob);
    expect(found).toMatchObject({ accountId: bobId });
    // Any discovery command of alice's profile publishes her number again under the new key.
    const shown = await cli(profiles.alice, '--json', 'phone', 'show');
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stderr).toContain('published your number again');
    expect(shown.json).toEqual([{ number: numbers.alice, published: true, keyVersion: 2 }]);

    // After the grace period: alice (republished) is found, bob only once his client republishes.
    await relay.stop();
    relay = await spawnRelay(database.url, {
      DISCOVERY_KEY: newKey,
      DISCOVERY_PREVIOUS_KEY: DISCOVERY_KEY,
      DISCOVERY_PREVIOUS_KEY_UNTIL: new Date(Date.now() - 1000).toISOString(),
    });
    relayLogs.push(relay.logs);
    const [alice] = await json(
      profiles.carol,
      'contacts',
      'add',
      'alice',
      '--phone',
      numbers.alice,
    );
    expect(alice).toMatchObject({ accountId: aliceId });
    const lost = await cli(profiles.carol, 'contacts', 'add', 'bob', '--phone', numbers.bob);
    expect(lost.code).toBe(1);
    expect(lost.stderr).toMatch(/not registered on this relay/);
    await json(profiles.bob, 'phone', 'show');
    const [again] = await json(profiles.carol, 'contacts', 'add', 'bob', '--phone', numbers.bob);
    expect(again).toMatchObject({ accountId: bobId });
  });

  it('leaves no number, hash of a number or OPRF input in the database dump or the relay logs', async () => {
    const forms = (e164: string): string[] => {
      const national = e164.slice(2); // 5551230001
      const [area, exchange, line] = [
        national.slice(0, 3),
        national.slice(3, 6),
        national.slice(6),
      ];
      return [
        e164,
        e164.slice(1),
        national,
        `1${national}`,
        `(${area}) ${exchange}-${line}`,
        `${area}-${exchange}-${line}`,
        `${area} ${exchange} ${line}`,
        `${area}.${exchange}.${line}`,
        `+1 ${area} ${exchange} ${line}`,
        `+1 ${area}-${exchange}-${line}`,
        `+1 (${area}) ${exchange}-${line}`,
        `1-${area}-${exchange}-${line}`,
        `tel:${e164}`,
        `privcomm discovery v1 ${e164}`,
      ];
    };
    const needles = Object.values(numbers).flatMap((number) =>
      forms(number).flatMap((form) => {
        const hashes = ['sha256', 'sha1'].flatMap((algorithm) => {
          const digest = createHash(algorithm).update(form).digest();
          return [digest.toString('hex'), digest.toString('base64'), digest.toString('base64url')];
        });
        // bytea columns are dumped as hex: the form's own bytes too.
        return [form, Buffer.from(form).toString('hex'), ...hashes];
      }),
    );
    const dump = (await dumpDatabase(database.url)).toLowerCase();
    const logs = relayLogs.flat().join('\n').toLowerCase();
    // What is there: one token row each for alice and bob, and no column but these.
    const tokenRows = dump
      .split('\n-- discovery_tokens\n')[1]
      ?.split('\n-- ')[0]
      ?.split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(tokenRows?.map((row) => row.account_id).sort()).toEqual([aliceId, bobId].sort());
    for (const row of tokenRows ?? []) {
      expect(Object.keys(row).sort()).toEqual(['account_id', 'key_version', 'token']);
    }
    expect(relayLogs.flat().length).toBeGreaterThan(0);
    for (const needle of needles) {
      expect(dump.includes(needle.toLowerCase()), `dump contains ${needle}`).toBe(false);
      expect(logs.includes(needle.toLowerCase()), `logs contain ${needle}`).toBe(false);
    }
  });
});
