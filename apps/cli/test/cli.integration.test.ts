import { copyFileSync, cpSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startRelay, type TestRelay } from '@privcomm/server/testing';
import {
  CLOSED_PORT,
  expectOneErrorLine,
  RunningCli,
  runCli,
  snapshotDir,
  removeTempDirs,
  tempDir,
} from './support/cli.ts';

/**
 * The command line against a real relay (in this process, on loopback, with PostgreSQL): what a
 * registered profile holds, and the bad input of the issue: unknown contacts and accounts, wrong
 * link codes, a relay that went down, damaged profiles. Messaging itself: messaging.e2e.test.ts.
 */

let relay: TestRelay;
let drop: () => Promise<void>;
let alice: string;
let bob: string;
let aliceId: string;
let bobId: string;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
  alice = tempDir('alice');
  bob = tempDir('bob');
  const [a, b] = await Promise.all([
    runCli(['--profile', alice, '--server', relay.url, '--json', 'register', '--name', 'Alice']),
    runCli(['--profile', bob, '--server', relay.url, '--json', 'register']),
  ]);
  expect(a.code, a.stderr).toBe(0);
  expect(b.code, b.stderr).toBe(0);
  aliceId = a.json[0].accountId;
  bobId = b.json[0].accountId;
  const added = await runCli(['--profile', alice, 'contacts', 'add', 'bob', bobId]);
  expect(added.code, added.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await relay?.close();
  await drop?.();
  removeTempDirs();
});

describe('a registered profile', () => {
  it('holds the account, the relay it registered with, and private files', async () => {
    const whoami = await runCli(['--profile', alice, '--json', 'whoami']);
    expect(whoami.code).toBe(0);
    expect(whoami.json).toEqual([
      { accountId: aliceId, deviceId: 1, server: relay.url, profile: alice, name: 'Alice' },
    ]);
    expect(aliceId).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(statSync(alice).mode & 0o777).toBe(0o700);
    expect(readdirSync(alice).sort()).toEqual(['auth.key', 'client.sqlite', 'engine.sqlite']);
    for (const file of readdirSync(alice))
      expect(statSync(path.join(alice, file)).mode & 0o777).toBe(0o600);
    const human = await runCli(['--profile', alice, 'whoami']);
    expect(human.stdout).toBe(
      `account  ${aliceId}\ndevice   1 (primary)\nserver   ${relay.url}\nprofile  ${alice}\n`,
    );
  });

  it('cannot register twice', async () => {
    const again = await runCli(['--profile', alice, 'register']);
    expect(again.code).toBe(1);
    expect(expectOneErrorLine(again)).toContain('this profile already has an account');
  });

  it('lists contacts, and refuses a second contact of the same name', async () => {
    const list = await runCli(['--profile', alice, '--json', 'contacts', 'list']);
    expect(list.json).toEqual([
      { name: 'bob', accountId: bobId, expireSeconds: 0, verified: false, identityChanged: false },
    ]);
    const clash = await runCli(['--profile', alice, 'contacts', 'add', 'bob', randomUUID()]);
    expect(clash.code).toBe(1);
    expect(expectOneErrorLine(clash)).toContain('a contact named "bob" already exists');
    const self = await runCli(['--profile', alice, 'contacts', 'add', 'me', aliceId]);
    expect(expectOneErrorLine(self)).toBe('privcomm: that is your own account id');
  });
});

describe('contact links', () => {
  it("print this account's link, add a contact from it, and refuse another relay's", async () => {
    const shown = await runCli(['--profile', bob, '--json', 'contacts', 'link']);
    expect(shown.code, shown.stderr).toBe(0);
    const link: string = shown.json[0].link;
    expect(link).toBe(
      `privcomm://contact/${bobId}?relay=${encodeURIComponent(relay.url.replace(/\/$/, ''))}`,
    );
    const added = await runCli([
      '--profile',
      alice,
      '--json',
      'contacts',
      'add',
      '--link',
      link,
      'bobby',
    ]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.json).toEqual([{ name: 'bobby', accountId: bobId, expireSeconds: 0 }]);
    const other = link.replace(/relay=[^#]*/, 'relay=https%3A%2F%2Felsewhere.example');
    const refused = await runCli(['--profile', alice, 'contacts', 'add', '--link', other, 'b']);
    expect(refused.code).toBe(1);
    expect(expectOneErrorLine(refused)).toMatch(
      /on the relay https:\/\/elsewhere\.example.*same relay/,
    );
    // Back to the name the other tests use.
    expect((await runCli(['--profile', alice, 'contacts', 'add', 'bob', bobId])).code).toBe(0);
  });
});

describe('bad input', () => {
  it('an unknown contact name', async () => {
    for (const args of [
      ['send', 'carol', 'hi'],
      ['history', 'carol'],
      ['safety-number', 'carol'],
    ]) {
      const result = await runCli(['--profile', alice, ...args]);
      expect(result.code).toBe(1);
      expect(expectOneErrorLine(result)).toBe(
        'privcomm: no contact named "carol"; add one with: contacts add NAME ACCOUNT_ID',
      );
    }
  });

  it('an account id the relay does not know', async () => {
    const stranger = randomUUID();
    const result = await runCli(['--profile', alice, 'send', stranger, 'hello?']);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toBe(
      `privcomm: no account ${stranger} on this relay; check the account id`,
    );
  });

  it('wrong link codes', async () => {
    const garbage = await runCli(['--profile', alice, 'devices', 'add', 'hello']);
    expect(garbage.code).toBe(1);
    expect(expectOneErrorLine(garbage)).toContain('that is not a link code; copy it again');
    // Well-formed, but its key is not a key.
    const badKey = await runCli([
      '--profile',
      alice,
      'devices',
      'add',
      `privcomm-link:${'A'.repeat(32)}.${'B'.repeat(44)}`,
    ]);
    expect(badKey.code).toBe(1);
    expect(expectOneErrorLine(badKey)).toContain('that link code holds no valid key');
  });

  it('a relay that went down: one line, exit 1, and the message is kept for later', async () => {
    const port = CLOSED_PORT;
    const down = ['--profile', alice, '--server', `http://127.0.0.1:${port}`];
    const receive = await runCli([...down, 'receive']);
    expect(receive.code).toBe(1);
    expect(expectOneErrorLine(receive)).toContain(
      `cannot reach the relay at http://127.0.0.1:${port}: connection refused. Is the relay running?`,
    );
    // With a session to Bob already (so that only the send itself needs the relay)...
    const before = await runCli(['--profile', alice, 'send', 'bob', 'before the relay went down']);
    expect(before.code, before.stderr).toBe(0);
    // ...the send gives up (nobody listens there: no point waiting) and keeps the message in
    // the outbox, and says so: nobody should send it twice...
    const send = await runCli([...down, '--json', 'send', 'bob', 'kept while the relay is down']);
    expect(send.code).toBe(1);
    const history = await runCli(['--profile', alice, '--json', 'history', 'bob', '--no-read']);
    const pending = history.json.filter((m) => m.status === 'sending');
    expect(pending).toMatchObject([{ direction: 'out', text: 'kept while the relay is down' }]);
    expect(expectOneErrorLine(send)).toBe(
      `privcomm: cannot reach the relay at http://127.0.0.1:${port}: connection refused. The message is kept in this profile (id ${pending[0].id}) and will be sent by the next "privcomm send", "receive" or "listen" that reaches the relay: do not send it again`,
    );
    // ...and a second one, with the first still waiting, says the same (one line).
    const again = await runCli([...down, 'send', 'bob', 'also kept']);
    expect(again.code).toBe(1);
    expect(expectOneErrorLine(again)).toContain('The message is kept in this profile (id ');
    // ...and the next command that reaches the relay sends it.
    const receiveLater = await runCli(['--profile', alice, 'receive', '--timeout', '0']);
    expect(receiveLater.code, receiveLater.stderr).toBe(0);
    const sent = await runCli(['--profile', alice, '--json', 'history', 'bob', '--no-read']);
    expect(sent.json).toMatchObject([
      { text: 'before the relay went down', status: 'sent' },
      { text: 'kept while the relay is down', status: 'sent' },
      { text: 'also kept', status: 'sent' },
    ]);
  }, 120_000);
});

describe('calls on a relay without TURN', () => {
  it('the caller learns why the callee could not take the call (TURN_NOT_CONFIGURED)', async () => {
    // Alice verified Bob, so her side may call directly, without TURN; Bob did not verify
    // Alice, so his side needs TURN, which this relay lacks: the call fails on Bob's side.
    const sent = await runCli(['--profile', alice, 'send', 'bob', 'call me']);
    expect(sent.code, sent.stderr).toBe(0);
    const verified = await runCli(['--profile', alice, 'verify', 'bob']);
    expect(verified.code, verified.stderr).toBe(0);
    const answering = RunningCli.start(['--profile', bob, 'answer', '--timeout', '40']);
    try {
      await answering.until(
        () => answering.stderrLines.some((line) => line.startsWith('waiting for a call')),
        'answer waiting',
      );
      const call = await runCli(
        ['--profile', alice, 'call', 'bob', '--ring-timeout', '30', '--duration', '1'],
        { timeoutMs: 60_000 },
      );
      expect(call.code, call.stderr).toBe(1);
      const lines = call.stderr.trim().split('\n');
      expect(lines.at(-1)).toBe(
        'privcomm: the call with bob failed: their device could not take part (TURN_NOT_CONFIGURED); the relay offers no TURN server, which a call with an unverified contact needs: verify each other ("privcomm verify") for a direct call, or ask the relay operator for TURN',
      );
      expect(await answering.wait()).toBe(1);
      expect(answering.stderrLines.at(-1)).toContain('TURN_NOT_CONFIGURED');
    } finally {
      await answering.stop('SIGKILL');
    }
  }, 120_000);
});

describe('devices and the account', () => {
  it('links a device, refuses primary-only commands on it, and removes it', async () => {
    const laptop = tempDir('alice-laptop');
    const linking = RunningCli.start([
      '--profile',
      laptop,
      '--server',
      relay.url,
      '--json',
      'link',
    ]);
    try {
      const { linkCode } = await linking.untilJson((l) => l.type === 'link-code', 'link code');
      const add = await runCli(['--profile', alice, '--json', 'devices', 'add', linkCode]);
      expect(add.json).toEqual([{ type: 'device-added', deviceId: 2 }]);
      expect(await linking.wait()).toBe(0);
    } finally {
      await linking.stop('SIGKILL');
    }
    const onLaptop = await runCli(['--profile', laptop, '--json', 'devices', 'list']);
    expect(onLaptop.json.map((d) => [d.deviceId, d.current])).toEqual([
      [1, false],
      [2, true],
    ]);

    // The laptop asked for the contacts; the phone sends them once it has the request.
    const contactsOf = async (profile: string) =>
      (await runCli(['--profile', profile, '--json', 'contacts', 'list'])).json.map((c) => [
        c.name,
        c.accountId,
      ]);
    const atPhone = await contactsOf(alice);
    expect(atPhone).toContainEqual(['bob', bobId]);
    const phone = await runCli(['--profile', alice, '--json', 'receive', '--timeout', '1']);
    expect(phone.json).toContainEqual({ type: 'contacts-requested', fromDevice: 2 });
    const got = await runCli(['--profile', laptop, 'receive', '--timeout', '1']);
    expect(got.stdout).toContain(`${atPhone.length} contact`);
    expect(got.stdout).toContain('from your device 1: bob');
    expect(await contactsOf(laptop)).toEqual(atPhone);
    const sync = await runCli(['--profile', laptop, 'contacts', 'sync']);
    expect(sync.stdout).toBe(
      `Sent ${atPhone.length} contact${atPhone.length === 1 ? '' : 's'} to your other devices: they get them with their next "receive" or "listen".\n`,
    );
    const notPrimary = await runCli(['--profile', laptop, 'delete-account', '--yes']);
    expect(notPrimary.code).toBe(1);
    expect(expectOneErrorLine(notPrimary)).toBe(
      'privcomm: only the primary device can delete the account (device 1); run this command there',
    );
    const self = await runCli(['--profile', alice, 'devices', 'remove', '1']);
    expect(expectOneErrorLine(self)).toContain('that is this device');

    const removed = await runCli(['--profile', alice, '--json', 'devices', 'remove', '2']);
    expect(removed.json).toEqual([{ type: 'device-removed', deviceId: 2 }]);
    const list = await runCli(['--profile', alice, '--json', 'devices', 'list']);
    expect(list.json.map((d) => d.deviceId)).toEqual([1]);
    const gone = await runCli(['--profile', laptop, 'receive']);
    expect(gone.code).toBe(1);
    expect(expectOneErrorLine(gone)).toBe(
      'privcomm: the relay no longer accepts this device (UNAUTHENTICATED): it was removed from its account, or the account was deleted. Link it again ("privcomm link") or register a new profile',
    );
    // A device id that does not exist is about the argument, not about this device.
    const unknown = await runCli(['--profile', alice, 'devices', 'remove', '5']);
    expect(expectOneErrorLine(unknown)).toBe(
      'privcomm: the relay refused (DEVICE_NOT_FOUND): no such device on this account; see "privcomm devices list"',
    );
  }, 120_000);

  it('deletes the account only when confirmed', async () => {
    const carol = tempDir('carol');
    const registered = await runCli([
      '--profile',
      carol,
      '--server',
      relay.url,
      '--json',
      'register',
    ]);
    expect(registered.code).toBe(0);
    // A single device has nobody to send its contacts to, and says so.
    const nothing = await runCli(['--profile', carol, 'contacts', 'sync']);
    expect(nothing.stdout).toBe('No contacts to send.\n');
    await runCli(['--profile', carol, 'contacts', 'add', 'bob', bobId]);
    const alone = await runCli(['--profile', carol, '--json', 'contacts', 'sync']);
    expect(alone.json).toEqual([{ type: 'contacts-sent', sent: 0 }]);
    const declined = await runCli(['--profile', carol, 'delete-account'], { input: 'no\n' });
    expect(declined.code).toBe(1);
    expect(declined.stderr).toMatch(
      /Type "delete" to confirm: privcomm: not confirmed: nothing was deleted/,
    );
    expect((await runCli(['--profile', carol, 'devices', 'list'])).code).toBe(0);

    const confirmed = await runCli(['--profile', carol, '--json', 'delete-account'], {
      input: 'delete\n',
    });
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(confirmed.json).toEqual([
      { type: 'account-deleted', accountId: registered.json[0].accountId },
    ]);
    const after = await runCli(['--profile', carol, 'devices', 'list']);
    expect(after.code).toBe(1);
    expect(expectOneErrorLine(after)).toMatch(
      /^privcomm: the relay no longer accepts this device \(\w+\): it was removed from its account, or the account was deleted/,
    );
    // The local profile is still there (history is not thrown away behind the user's back).
    expect((await runCli(['--profile', carol, 'whoami'])).code).toBe(0);
  }, 120_000);
});

describe('a damaged registered profile', () => {
  const cases: [string, (dir: string) => void, RegExp][] = [
    [
      'client store overwritten',
      (dir) => writeFileSync(path.join(dir, 'client.sqlite'), Buffer.alloc(8192, 7)),
      /client store .* is damaged: it is not a SQLite database\. Nothing was changed; restore the file from a backup, or use another --profile$/,
    ],
    [
      'client store replaced by another SQLite database',
      (dir) => copyFileSync(path.join(dir, 'engine.sqlite'), path.join(dir, 'client.sqlite')),
      /client store .* is damaged: it is a SQLite database, but not a privcomm client store/,
    ],
    [
      'key store truncated',
      (dir) => {
        const file = path.join(dir, 'engine.sqlite');
        writeFileSync(file, Buffer.from('SQLite format 3\0' + 'x'.repeat(200), 'latin1'));
      },
      /key store .* is damaged/,
    ],
    [
      'key store deleted',
      (dir) => rmSync(path.join(dir, 'engine.sqlite')),
      /key store .* is damaged: it is missing or empty, so the identity key is lost/,
    ],
    [
      'device key overwritten',
      (dir) => writeFileSync(path.join(dir, 'auth.key'), 'oops'),
      /device key .* is damaged: cannot read the key/,
    ],
  ];

  it.each(cases)(
    '%s: one line, exit 1, nothing changed or created',
    async (_name, damage, pattern) => {
      const dir = tempDir('damaged-copy');
      cpSync(alice, dir, { recursive: true });
      damage(dir);
      const before = snapshotDir(dir);
      const result = await runCli(['--profile', dir, 'send', 'bob', 'must not be sent']);
      expect(result.code).toBe(1);
      expect(expectOneErrorLine(result)).toMatch(pattern);
      expect(snapshotDir(dir)).toEqual(before);
    },
  );
});
