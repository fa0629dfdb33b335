import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestDatabase,
  dumpDatabase,
  queueCounters,
  requeueEnvelope,
  spawnRelay,
  type RelayProcess,
  portToRestartOn,
} from '@privcomm/server/testing';
import { removeTempDirs, RunningCli, runCli, tempDir, type CliResult } from './support/cli.ts';
import { passOffKeys } from './support/identity-swap.ts';

/**
 * The "Done means", end to end: real relay processes (one, restarted once, on one
 * PostgreSQL database), and the `privcomm` binary as a child process for every step, with one
 * profile directory per device. The steps build on each other (one conversation that grows),
 * so they run in order; each one fails on its own assertions.
 *
 * Devices: alice, bob (primaries); later bob2 (bob's linked device), alice2 (alice's linked
 * device) and mallory (an account whose keys a compromised relay passes off as bob's).
 */

let database: { url: string; drop: () => Promise<void> };
let relay: RelayProcess;
let relayUrl: string;
let db: pg.Client;
/** The log lines of every relay process of the run. */
const relayLogs: string[][] = [];
/** Every plaintext sent, to be searched for in the relay's database and logs at the end. */
const plaintexts: string[] = [];
const running: RunningCli[] = [];

const profiles = {
  alice: tempDir('alice'),
  bob: tempDir('bob'),
  bob2: tempDir('bob2'),
  alice2: tempDir('alice2'),
  mallory: tempDir('mallory'),
};
let aliceId: string;
let bobId: string;

/** A distinctive message text, remembered for the final search. */
const text = (label: string): string => {
  const value = `${label} ${randomBytes(8).toString('hex')}`;
  plaintexts.push(value);
  return value;
};

/**
 * Copies to one's own devices are due at once (the default waits 10 s to 3 min); they still go
 * out only when the sending profile next connects (receive, listen).
 */
const env = { PRIVCOMM_SYNC_DELAY: '0' };

const cli = (profile: string, ...args: string[]): Promise<CliResult> =>
  runCli(['--profile', profile, ...args], { env });

/** Runs a command that must succeed, with --json; returns its objects. */
const json = async (profile: string, ...args: string[]): Promise<any[]> => {
  const result = await cli(profile, '--json', ...args);
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.json;
};

const start = (profile: string, ...args: string[]): RunningCli => {
  const process = RunningCli.start(['--profile', profile, '--json', ...args], { env });
  running.push(process);
  return process;
};

const envelopeCount = async (accountId?: string): Promise<number> => {
  const result = await db.query<{ n: number }>(
    accountId === undefined
      ? 'SELECT count(*)::int AS n FROM envelopes'
      : 'SELECT count(*)::int AS n FROM envelopes WHERE account_id = $1',
    accountId === undefined ? [] : [accountId],
  );
  return result.rows[0]!.n;
};

/** The devices' queue counters: they move on every insert, even one deleted right after. */
const envelopeSequence = (): Promise<string> => queueCounters(db);

/** How many sends the relay answered 409 (its Prometheus counter). */
const mismatchedDeviceAnswers = async (): Promise<number> => {
  const metrics = await (await fetch(`${relayUrl}/metrics`)).text();
  const line = metrics
    .split('\n')
    .find((l) =>
      l.startsWith('privcomm_http_requests_total{route="/v1/messages/:accountId",status="409"}'),
    );
  return line ? Number(line.split(' ').pop()) : 0;
};

/** Links a new device profile to `primary`'s account; returns the new device id. */
const link = async (primary: string, newDevice: string, accountId: string): Promise<number> => {
  const linking = RunningCli.start([
    '--profile',
    newDevice,
    '--server',
    relayUrl,
    '--json',
    'link',
  ]);
  running.push(linking);
  const { linkCode } = await linking.untilJson((l) => l.type === 'link-code', 'link code');
  const added = await json(primary, 'devices', 'add', linkCode);
  expect(await linking.wait()).toBe(0);
  const linked = linking.json.find((l) => l.type === 'linked');
  expect(linked).toEqual({
    type: 'linked',
    accountId,
    deviceId: added[0].deviceId,
    server: relayUrl,
  });
  return linked.deviceId;
};

const messages = (objects: any[]) => objects.filter((o) => o.type === 'message');

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await spawnRelay(database.url, { PORT: String(await portToRestartOn()) });
  relayLogs.push(relay.logs);
  relayUrl = relay.url;
  db = new pg.Client({ connectionString: database.url });
  await db.connect();
  const [alice, bob] = await Promise.all([
    json(profiles.alice, '--server', relayUrl, 'register', '--name', 'Alice'),
    json(profiles.bob, '--server', relayUrl, 'register'),
  ]);
  aliceId = alice[0].accountId;
  bobId = bob[0].accountId;
  // From here on, no --server: each profile uses the relay it registered with.
  await Promise.all([
    json(profiles.alice, 'contacts', 'add', 'bob', bobId),
    json(profiles.bob, 'contacts', 'add', 'alice', aliceId),
  ]);
}, 90_000);

afterAll(async () => {
  for (const process of running) await process.stop('SIGKILL');
  await relay?.stop();
  await db?.end();
  await database?.drop();
  removeTempDirs();
});

describe('two people, several devices, one relay', () => {
  let onlineId: string;
  let onlineBody: string;
  let offlineId: string;
  let bobSafetyNumber: string;

  it('delivers online at once; typing reaches an online contact and is never stored', async () => {
    const listen = start(profiles.bob, 'listen');
    await listen.untilJson((l) => l.type === 'queue-empty', 'bob connected');
    const sequence = await envelopeSequence();

    const typing = await json(profiles.alice, 'typing', 'bob');
    expect(typing).toEqual([{ type: 'typing', to: bobId, typing: true }]);
    await listen.untilJson((l) => l.type === 'typing', 'typing indicator');
    expect(listen.json.find((l) => l.type === 'typing')).toEqual({
      type: 'typing',
      from: aliceId,
      fromDevice: 1,
      typing: true,
    });
    // Never stored: not queued now, and no row was ever inserted (the identity did not move).
    expect(await envelopeCount()).toBe(0);
    expect(await envelopeSequence()).toBe(sequence);

    const body = text('online');
    onlineBody = body;
    const [sent] = await json(profiles.alice, 'send', 'bob', body);
    expect(sent).toMatchObject({ type: 'sent', to: bobId, contact: 'bob', status: 'sent' });
    onlineId = sent.id;
    const shown = await listen.untilJson((l) => l.type === 'message', 'online message');
    expect(shown).toEqual({
      type: 'message',
      id: sent.id,
      conversation: aliceId,
      contact: 'alice',
      direction: 'in',
      from: aliceId,
      to: bobId,
      fromDevice: 1,
      text: body,
      sentAt: sent.sentAt,
      receivedAt: expect.any(Number),
      status: 'delivered',
    });
    expect(await listen.stop('SIGINT')).toBe(0);
  }, 60_000);

  it('delivers offline across a relay restart; listen reconnects; delivery and read receipts', async () => {
    const aliceListen = start(profiles.alice, 'listen');
    // The receipt bob's listen sent for the online message.
    await aliceListen.untilJson(
      (l) => l.type === 'receipt' && l.receipt === 'delivered' && l.messageIds.includes(onlineId),
      'delivery receipt of the online message',
    );
    await aliceListen.untilJson((l) => l.type === 'queue-empty', 'alice connected');

    const body = text('offline');
    const [sent] = await json(profiles.alice, 'send', 'bob', body);
    offlineId = sent.id;
    expect(await envelopeCount(bobId)).toBe(1);
    // Typing to someone offline: dropped by the relay, never stored.
    const sequence = await envelopeSequence();
    await json(profiles.alice, 'typing', 'bob');
    expect(await envelopeSequence()).toBe(sequence);
    expect(await envelopeCount(bobId)).toBe(1);

    // The relay restarts (same database, same port) between the send and the receive.
    const port = new URL(relayUrl).port;
    expect(await relay.stop('SIGTERM')).toBe(0);
    relay = await spawnRelay(database.url, { PORT: port });
    relayLogs.push(relay.logs);
    expect(relay.url).toBe(relayUrl);
    await aliceListen.until(
      () => aliceListen.json.filter((l) => l.type === 'queue-empty').length >= 2,
      'alice listen reconnected',
      45_000,
    );
    expect(aliceListen.stderrLines.some((l) => /disconnected|retrying/.test(l))).toBe(true);

    const received = await json(profiles.bob, 'receive', '--timeout', '1');
    expect(received).toEqual([
      expect.objectContaining({ type: 'message', id: offlineId, from: aliceId, text: body }),
    ]);
    expect(await envelopeCount(bobId)).toBe(0);
    await aliceListen.untilJson(
      (l) => l.type === 'receipt' && l.receipt === 'delivered' && l.messageIds.includes(offlineId),
      'delivery receipt of the offline message',
    );

    // Reading the conversation sends read receipts.
    const history = await json(profiles.bob, 'history', 'alice');
    expect(history.map((m) => [m.id, m.direction, m.text])).toEqual([
      [onlineId, 'in', onlineBody],
      [offlineId, 'in', body],
    ]);
    const read = await aliceListen.untilJson(
      (l) => l.type === 'receipt' && l.receipt === 'read',
      'read receipt',
    );
    expect(read).toEqual({
      type: 'receipt',
      receipt: 'read',
      conversation: bobId,
      from: bobId,
      messageIds: [onlineId, offlineId],
    });
    expect(await aliceListen.stop('SIGTERM')).toBe(0);

    const aliceHistory = await json(profiles.alice, 'history', 'bob', '--no-read');
    expect(aliceHistory.map((m) => [m.id, m.direction, m.status])).toEqual([
      [onlineId, 'out', 'read'],
      [offlineId, 'out', 'read'],
    ]);
  }, 120_000);

  it('de-duplicates a redelivered envelope', async () => {
    const body = text('redelivered');
    await json(profiles.alice, 'send', 'bob', body);
    const { rows } = await db.query(
      `SELECT id, account_id, device_id, type, content, urgent, stored_hour, expires_at
       FROM envelopes WHERE account_id = $1`,
      [bobId],
    );
    expect(rows).toHaveLength(1);
    const first = await json(profiles.bob, 'receive', '--timeout', '1');
    expect(messages(first).map((m) => m.text)).toEqual([body]);
    expect(await envelopeCount(bobId)).toBe(0);

    // The relay hands it out again, as after an acknowledgement lost to a crash (same envelope
    // id), and once more under a new id (a replay of the same ciphertext).
    const row = rows[0];
    await requeueEnvelope(db, row);
    await requeueEnvelope(db, { ...row, id: randomUUID() });
    expect(await envelopeCount(bobId)).toBe(2);

    const second = await cli(profiles.bob, '--json', 'receive', '--timeout', '1');
    expect(second.code, second.stderr).toBe(0);
    expect(second.json).toEqual([]);
    expect(await envelopeCount(bobId)).toBe(0);
    const history = await json(profiles.bob, 'history', 'alice', '--no-read');
    expect(history.filter((m) => m.text === body)).toHaveLength(1);
  }, 60_000);

  it('removes disappearing messages on both sides, from the files too', async () => {
    expect(await json(profiles.alice, 'disappear', 'bob', '2')).toEqual([
      { type: 'timer', conversation: bobId, expireSeconds: 2 },
    ]);
    const body = text('disappearing');
    const [sent] = await json(profiles.alice, 'send', 'bob', body);
    const received = await json(profiles.bob, 'receive', '--timeout', '1');
    expect(received).toEqual(
      expect.arrayContaining([
        { type: 'timer', conversation: aliceId, expireSeconds: 2 },
        expect.objectContaining({
          type: 'message',
          id: sent.id,
          text: body,
          expiresAt: expect.any(Number),
        }),
      ]),
    );
    for (const [profile, contact] of [
      [profiles.alice, 'bob'],
      [profiles.bob, 'alice'],
    ] as const) {
      await expect
        .poll(
          async () =>
            (await json(profile, 'history', contact, '--no-read')).some((m) => m.id === sent.id),
          { timeout: 30_000, interval: 500 },
        )
        .toBe(false);
      for (const file of ['client.sqlite', 'engine.sqlite'])
        expect(readFileSync(path.join(profile, file)).includes(body), `${profile}/${file}`).toBe(
          false,
        );
    }
    // Off again for the rest, on both sides.
    await json(profiles.alice, 'disappear', 'bob', '0');
    expect(await json(profiles.bob, 'receive', '--timeout', '1')).toContainEqual({
      type: 'timer',
      conversation: aliceId,
      expireSeconds: 0,
    });
  }, 90_000);

  it('a recipient links a second device: the sender recovers through 409 and both devices get it', async () => {
    expect(await link(profiles.bob, profiles.bob2, bobId)).toBe(2);
    const devices = await json(profiles.bob, 'devices', 'list');
    expect(devices.map((d) => [d.deviceId, d.current])).toEqual([
      [1, true],
      [2, false],
    ]);

    const conflicts = await mismatchedDeviceAnswers();
    const body = text('to both devices');
    const [sent] = await json(profiles.alice, 'send', 'bob', body);
    expect(await mismatchedDeviceAnswers()).toBe(conflicts + 1);
    const [onBob, onBob2] = await Promise.all([
      json(profiles.bob, 'receive', '--timeout', '1'),
      json(profiles.bob2, 'receive', '--timeout', '1'),
    ]);
    for (const received of [onBob, onBob2])
      expect(messages(received)).toEqual([
        expect.objectContaining({ id: sent.id, from: aliceId, to: bobId, text: body }),
      ]);
  }, 90_000);

  it("the sender's own second device gets the sync transcript", async () => {
    expect(await link(profiles.alice, profiles.alice2, aliceId)).toBe(2);
    const body = text('sync transcript');
    const [sent] = await json(profiles.alice, 'send', 'bob', body);
    // The copy waits in alice's profile, and goes out when alice next connects (with the
    // copies of her earlier messages that were still waiting: alice has not connected since).
    expect(messages(await json(profiles.alice2, 'receive', '--timeout', '1'))).toEqual([]);
    await json(profiles.alice, 'receive', '--timeout', '1');
    const received = await json(profiles.alice2, 'receive', '--timeout', '1');
    expect(messages(received).filter((m) => m.text === body)).toEqual([
      expect.objectContaining({
        id: sent.id,
        direction: 'out',
        conversation: bobId,
        from: aliceId,
        to: bobId,
        text: body,
        sentAt: sent.sentAt,
      }),
    ]);
    const history = await json(profiles.alice2, 'history', bobId, '--no-read');
    expect(history.map((m) => [m.id, m.direction, m.text])).toContainEqual([sent.id, 'out', body]);
    const whoami = await json(profiles.alice2, 'whoami');
    expect(whoami).toEqual([
      {
        accountId: aliceId,
        deviceId: 2,
        server: relayUrl,
        profile: profiles.alice2,
        name: 'Alice',
      },
    ]);
  }, 90_000);

  it('shows the same safety number on both sides, and verifies only a matching one', async () => {
    const [[mine], [theirs]] = await Promise.all([
      json(profiles.alice, 'safety-number', 'bob'),
      json(profiles.bob, 'safety-number', 'alice'),
    ]);
    expect(mine.digits).toMatch(/^\d{60}$/);
    expect(mine.digits).toBe(theirs.digits);
    expect(mine.safetyNumber.split(' ')).toHaveLength(12);
    expect(mine.safetyNumber.replace(/ /g, '')).toBe(mine.digits);
    expect(Buffer.from(mine.scannable, 'base64').length).toBeGreaterThan(32);
    expect(mine).toMatchObject({ accountId: bobId, contact: 'bob', verified: false });
    bobSafetyNumber = theirs.digits;

    const last = Number(theirs.digits.at(-1));
    const wrong = `${theirs.digits.slice(0, -1)}${(last + 1) % 10}`;
    const refused = await cli(profiles.alice, 'verify', 'bob', wrong);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^privcomm: the safety numbers do not match: bob was NOT verified/,
    );
    expect((await json(profiles.alice, 'contacts', 'list'))[0].verified).toBe(false);

    expect(await json(profiles.alice, 'verify', 'bob', ...theirs.safetyNumber.split(' '))).toEqual([
      { accountId: bobId, verified: true },
    ]);
    expect((await json(profiles.alice, 'contacts', 'list'))[0]).toMatchObject({
      verified: true,
      identityChanged: false,
    });
  }, 120_000);

  it("detects an identity change (a relay passing off another account's keys as bob's)", async () => {
    // alice2 has not verified bob: it will trust on first use, then only be warned.
    const beforeSwap = text('before the swap');
    await json(profiles.alice2, 'send', bobId, beforeSwap);

    // The attacker: a real account whose identity and device keys the relay's database then
    // hands out as bob's (bob's account reduced to that one device), as a compromised relay, or
    // someone with write access to its database, could.
    const [mallory] = await json(profiles.mallory, '--server', relayUrl, 'register');
    await passOffKeys(db, bobId, mallory.accountId);

    // alice verified bob: the send stops, with what to do.
    const blockedText = text('blocked by the changed key');
    const blocked = await cli(profiles.alice, 'send', 'bob', blockedText);
    expect(blocked.code).toBe(1);
    expect(blocked.stderr).toBe(
      `privcomm: the safety number with ${bobId} changed since you verified it: someone may be intercepting. Compare it again ("privcomm safety-number ${bobId}"), then run "privcomm accept-identity ${bobId}" to trust the new key\n`,
    );
    expect((await json(profiles.alice, 'contacts', 'list'))[0]).toMatchObject({
      verified: true,
      identityChanged: true,
    });
    const history = await json(profiles.alice, 'history', 'bob', '--no-read');
    expect(history.find((m) => m.text === blockedText)).toMatchObject({ status: 'failed' });

    // alice2 had not verified: the send goes on, with a warning.
    const warned = await cli(profiles.alice2, 'send', bobId, text('after the swap'));
    expect(warned.code, warned.stderr).toBe(0);
    // (By name: alice2 has alice's contacts, which alice sent when she last received.)
    expect(warned.stderr).toContain('privcomm: warning: the safety number with bob changed');

    // Accepting the new key unblocks sending; comparing numbers would now reveal the swap.
    expect(await json(profiles.alice, 'accept-identity', 'bob')).toEqual([
      { accountId: bobId, accepted: true, verified: false },
    ]);
    const [[after]] = await Promise.all([json(profiles.alice, 'safety-number', 'bob')]);
    expect(after.verified).toBe(false);
    expect(after.digits).not.toBe(bobSafetyNumber);
    await json(profiles.alice, 'send', 'bob', text('after accepting'));
  }, 120_000);

  it("leaves no plaintext in the relay's database or logs", async () => {
    expect(plaintexts.length).toBeGreaterThanOrEqual(10);
    const dump = await dumpDatabase(database.url);
    // The dump is real: it holds the accounts and the queued ciphertexts.
    expect(dump).toContain(aliceId);
    expect(dump).toContain('-- envelopes');
    const logs = relayLogs.flat().join('\n');
    expect(relayLogs.flat().length).toBeGreaterThan(0);
    for (const plaintext of plaintexts) {
      const forms = [
        plaintext,
        Buffer.from(plaintext).toString('hex'),
        Buffer.from(plaintext).toString('base64'),
      ];
      for (const form of forms) {
        expect(dump.includes(form), `dump contains "${plaintext}"`).toBe(false);
        expect(logs.includes(form), `logs contain "${plaintext}"`).toBe(false);
      }
    }
  });
});
