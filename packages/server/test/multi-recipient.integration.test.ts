import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_MULTI_RECIPIENT_BYTES, SEALED_SENDER_V2_AT_REST } from '@privcomm/wire';
import { createTestDatabase, dumpDatabase } from './support/database.ts';
import { TestDevice, TestSocket } from './support/client.ts';
import { GroupSender, registerMember, type RecipientAccount } from './support/group-sender.ts';
import { startRelay, type TestRelay } from './support/relay.ts';
import { runInCommon } from './support/at-rest.ts';
import { parseMultiRecipientMessage } from '../src/services/multi-recipient.ts';

/**
 * PUT /v1/messages/multi with real multi-recipient sealed messages (libsignal, as the engines'
 * groupEncrypt makes them): one upload, one ordinary envelope per device, the single send's
 * device-set rules per recipient account, all or nothing, each share sealed at rest to its
 * account's identity key, and nothing stored that ties the envelopes of one upload together but
 * their arrival.
 */

let relay: TestRelay;
let databaseUrl: string;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
  relay = await startRelay(databaseUrl);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

/** A recipient account as a sender sees it: every device the relay has for it. */
const accountOf = (...devices: TestDevice[]): RecipientAccount => ({
  accountId: devices[0]!.accountId,
  devices: devices.map((device) => device.address()),
});

const upload = (
  from: TestDevice,
  content: Buffer,
  options: { online?: boolean; urgent?: boolean } = {},
) =>
  from.request('PUT', '/v1/messages/multi', {
    type: 2,
    content: content.toString('base64'),
    ...options,
  });

const countQueued = (device: TestDevice) =>
  relay.relay.context.envelopes.countFor(device.accountId, device.deviceId);

/** A sender with sessions to every device of `accounts`. */
const senderFor = async (from: TestDevice, accounts: RecipientAccount[]): Promise<GroupSender> => {
  const sender = new GroupSender(from.accountId, from.deviceId);
  for (const account of accounts) await sender.addRecipient(account);
  return sender;
};

/** An envelope as the tests open it: its type and its content's bytes. */
const bytesOf = (envelope: { type: number; content: string }) => ({
  type: envelope.type,
  content: Buffer.from(envelope.content, 'base64'),
});

/** Waits for the socket's envelopes and returns them. */
const received = async (socket: TestSocket, count: number) => {
  await socket.until(() => socket.envelopes().length >= count, 10_000, `${count} envelopes`);
  return socket.envelopes();
};

/** How many requests the relay's message routes have answered (its own metric). */
const messageRequests = async (): Promise<number> => {
  const metric = await relay.relay.context.metrics.httpRequests.get();
  return metric.values
    .filter((value) => String(value.labels.route).startsWith('/v1/messages'))
    .reduce((sum, value) => sum + value.value, 0);
};

describe('PUT /v1/messages/multi', () => {
  it("stores each device's share as an ordinary envelope, which that device opens", async () => {
    const alice = await registerMember(relay.url);
    const bob = await registerMember(relay.url);
    const carol = await registerMember(relay.url);
    const carolLaptop = await TestDevice.link(carol);
    const recipients = [accountOf(bob), accountOf(carol, carolLaptop)];
    const sender = await senderFor(alice, recipients);

    const sent = await upload(alice, await sender.encrypt(recipients, 'hello group'));
    expect(sent.status).toBe(200);
    expect(sent.body).toEqual({ stored: 3 });
    for (const device of [bob, carol, carolLaptop]) expect(await countQueued(device)).toBe(1);

    for (const device of [bob, carol, carolLaptop]) {
      const socket = await TestSocket.connect(relay.wsUrl, device);
      const [envelope] = await received(socket, 1);
      expect(envelope).toMatchObject({
        type: SEALED_SENDER_V2_AT_REST,
        urgent: false,
        online: false,
      });
      expect(await sender.open(device.accountId, bytesOf(envelope!))).toBe('hello group');
      await socket.close();
    }
  });

  it('checks every account as a single send does, answers for all of them, and stores nothing', async () => {
    const alice = await registerMember(relay.url);
    const bob = await registerMember(relay.url);
    const bobLaptop = await TestDevice.link(bob);
    const carol = await registerMember(relay.url);
    const dave = await registerMember(relay.url);
    const gone = await registerMember(relay.url);
    const goneAccount = accountOf(gone);
    expect((await gone.request('DELETE', '/v1/accounts/me')).status).toBe(204);

    // Bob's laptop is missing; Carol's registration id is an old one; Dave's set is right.
    const staleCarol = {
      accountId: carol.accountId,
      devices: [{ deviceId: carol.deviceId, registrationId: (carol.registrationId % 16380) + 1 }],
    };
    const sender = await senderFor(alice, [
      accountOf(bob),
      staleCarol,
      accountOf(dave),
      goneAccount,
    ]);
    const unknown = await upload(
      alice,
      await sender.encrypt([accountOf(bob), accountOf(dave), goneAccount], 'x'),
    );
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({
      error: { code: 'ACCOUNT_NOT_FOUND' },
      unknownAccounts: [gone.accountId],
    });

    const stale = await upload(
      alice,
      await sender.encrypt([accountOf(bob), staleCarol, accountOf(dave)], 'x'),
    );
    expect(stale.status).toBe(410);
    expect(stale.body.error.code).toBe('STALE_DEVICES');
    expect(stale.body.accounts).toEqual(
      expect.arrayContaining([
        {
          accountId: bob.accountId,
          missingDevices: [bobLaptop.deviceId],
          extraDevices: [],
          staleDevices: [],
        },
        { accountId: carol.accountId, missingDevices: [], extraDevices: [], staleDevices: [1] },
      ]),
    );
    expect(stale.body.accounts).toHaveLength(2);

    // Carol fixed; Bob still lacks his laptop, and Dave is given a device he does not have.
    await sender.addRecipient(accountOf(carol));
    await sender.addRecipient({
      accountId: dave.accountId,
      devices: [{ deviceId: 5, registrationId: 77 }],
    });
    const daveWithExtra = {
      accountId: dave.accountId,
      devices: [dave.address(), { deviceId: 5, registrationId: 77 }],
    };
    const mismatched = await upload(
      alice,
      await sender.encrypt([accountOf(bob), accountOf(carol), daveWithExtra], 'x'),
    );
    expect(mismatched.status).toBe(409);
    expect(mismatched.body.error.code).toBe('MISMATCHED_DEVICES');
    expect(mismatched.body.accounts).toEqual(
      expect.arrayContaining([
        {
          accountId: bob.accountId,
          missingDevices: [bobLaptop.deviceId],
          extraDevices: [],
          staleDevices: [],
        },
        { accountId: dave.accountId, missingDevices: [], extraDevices: [5], staleDevices: [] },
      ]),
    );
    expect(mismatched.body.accounts).toHaveLength(2);

    // All or nothing: not even the accounts that were right got anything.
    for (const device of [bob, bobLaptop, carol, dave]) expect(await countQueued(device)).toBe(0);

    await sender.addRecipient(accountOf(bob, bobLaptop));
    const fixed = await upload(
      alice,
      await sender.encrypt([accountOf(bob, bobLaptop), accountOf(carol), accountOf(dave)], 'x'),
    );
    expect(fixed.status).toBe(200);
    expect(fixed.body).toEqual({ stored: 4 });
  });

  it("refuses the sender's own account, what is not such a message, and oversized ones", async () => {
    const alice = await registerMember(relay.url);
    const aliceLaptop = await TestDevice.link(alice);
    const bob = await registerMember(relay.url);
    const sender = await senderFor(alice, [accountOf(bob), accountOf(aliceLaptop)]);

    const own = await upload(
      alice,
      await sender.encrypt([accountOf(bob), accountOf(aliceLaptop)], 'x'),
    );
    expect(own.status).toBe(400);
    expect(own.body.error.details).toContain("sender's own account");

    // Only sealed sender v2 (type 2) is cut; devices receive its shares as type 3.
    for (const type of [1, 3]) {
      const wrongType = await alice.request('PUT', '/v1/messages/multi', {
        type,
        content: (await sender.encrypt([accountOf(bob)], 'x')).toString('base64'),
      });
      expect(wrongType.status).toBe(400);
      expect(wrongType.body.error.code).toBe('VALIDATION_FAILED');
    }

    const garbage = await upload(alice, Buffer.from('not a multi-recipient message at all'));
    expect(garbage.status).toBe(400);
    expect(garbage.body.error.code).toBe('VALIDATION_FAILED');

    // A share above the per-device limit (96 KiB), and above the online limit (4 KiB).
    const big = await upload(alice, await sender.encrypt([accountOf(bob)], 'a'.repeat(97 * 1024)));
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('CONTENT_TOO_LARGE');
    const online = await upload(alice, await sender.encrypt([accountOf(bob)], 'b'.repeat(5000)), {
      online: true,
    });
    expect(online.status).toBe(413);
    // The whole upload above its limit.
    const huge = await upload(alice, Buffer.alloc(MAX_MULTI_RECIPIENT_BYTES + 1, 0x23));
    expect(huge.status).toBe(413);
    // Unauthenticated.
    const anonymous = await bob.request('PUT', '/v1/messages/multi', { type: 2, content: 'AAAA' });
    expect(anonymous.status).toBe(400);
    bob.token = 'nope';
    expect(
      (await bob.request('PUT', '/v1/messages/multi', { type: 2, content: 'AAAA' })).status,
    ).toBe(401);
    for (const device of [bob, aliceLaptop]) expect(await countQueued(device)).toBe(0);
  });

  it('hands an online upload to connected devices only and stores nothing', async () => {
    const alice = await registerMember(relay.url);
    const bob = await registerMember(relay.url);
    const carol = await registerMember(relay.url);
    const recipients = [accountOf(bob), accountOf(carol)];
    const sender = await senderFor(alice, recipients);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    const sent = await upload(alice, await sender.encrypt(recipients, 'typing'), {
      online: true,
    });
    expect(sent.body).toEqual({ stored: 0 });
    const [envelope] = await received(socket, 1);
    // Sealed at rest too, though never stored: one kind of share for the engines to open.
    expect(envelope).toMatchObject({ type: SEALED_SENDER_V2_AT_REST, online: true });
    expect(await sender.open(bob.accountId, bytesOf(envelope!))).toBe('typing');
    expect(await countQueued(carol)).toBe(0);
    await socket.close();
  });

  it('takes an upload to 100 accounts as one request, and 100 envelopes arrive', async () => {
    const alice = await registerMember(relay.url);
    const members = await Promise.all(Array.from({ length: 100 }, () => registerMember(relay.url)));
    const recipients = members.map((member) => accountOf(member));
    const sender = await senderFor(alice, recipients);
    const message = await sender.encrypt(recipients, 'to a hundred');

    const before = await messageRequests();
    const sent = await upload(alice, message);
    expect(sent.status).toBe(200);
    expect(sent.body).toEqual({ stored: 100 });
    expect((await messageRequests()) - before).toBe(1);

    const sockets = await Promise.all(
      members.map((member) => TestSocket.connect(relay.wsUrl, member)),
    );
    try {
      for (const [i, socket] of sockets.entries()) {
        const envelopes = await received(socket, 1);
        expect(envelopes).toHaveLength(1);
        expect(await sender.open(members[i]!.accountId, bytesOf(envelopes[0]!))).toBe(
          'to a hundred',
        );
      }
    } finally {
      await Promise.all(sockets.map((socket) => socket.close()));
    }
  }, 120_000);
});

describe('limits of the multi upload', () => {
  let limited: TestRelay;
  beforeAll(async () => {
    limited = await startRelay(databaseUrl, {
      RATE_LIMIT_MESSAGES: '2/3600',
      QUEUE_MAX_ENVELOPES: '3',
    });
  });
  afterAll(async () => {
    await limited?.close();
  });

  it('spends the per-recipient send rate and refuses beyond it', async () => {
    const alice = await registerMember(limited.url);
    const bob = await registerMember(limited.url);
    const carol = await registerMember(limited.url);
    const recipients = [accountOf(bob), accountOf(carol)];
    const sender = await senderFor(alice, recipients);
    for (let i = 0; i < 2; i += 1) {
      expect((await upload(alice, await sender.encrypt(recipients, `m${i}`))).status).toBe(200);
    }
    const third = await upload(alice, await sender.encrypt(recipients, 'm2'));
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('RATE_LIMITED');
    expect(third.body.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('names the accounts whose queue is full, and stores nothing for the others', async () => {
    const alice = await registerMember(limited.url);
    const bob = await registerMember(limited.url);
    const carol = await registerMember(limited.url);
    // Bob's queue fills up with three messages from others.
    for (let i = 0; i < 3; i += 1) {
      const other = await registerMember(limited.url);
      expect((await other.send(bob.accountId, [bob.address()], `fill ${i}`)).status).toBe(200);
    }
    const recipients = [accountOf(bob), accountOf(carol)];
    const sender = await senderFor(alice, recipients);
    const full = await upload(alice, await sender.encrypt(recipients, 'x'));
    expect(full.status).toBe(429);
    expect(full.body).toMatchObject({
      error: { code: 'QUEUE_FULL' },
      fullAccounts: [bob.accountId],
    });
    expect(full.body.retryAfterSeconds).toBeGreaterThan(0);
    expect(await limited.relay.context.envelopes.countFor(carol.accountId, carol.deviceId)).toBe(0);
  });
});

describe("the sender's byte budget and a multi upload", () => {
  // The least SEND_BYTES_PER_HOUR the relay takes: one largest send to six devices.
  const budget = 6 * 96 * 1024;
  let budgeted: TestRelay;
  beforeAll(async () => {
    budgeted = await startRelay(databaseUrl, { SEND_BYTES_PER_HOUR: String(budget) });
  });
  afterAll(async () => {
    await budgeted?.close();
  });

  it('charges the bytes uploaded, not those stored for every device, and still refuses a flood', async () => {
    const alice = await registerMember(budgeted.url);
    const members = await Promise.all(
      Array.from({ length: 8 }, () => registerMember(budgeted.url)),
    );
    const recipients = members.map((member) => accountOf(member));
    const sender = await senderFor(alice, recipients);
    const message = await sender.encrypt(recipients, 'g'.repeat(80 * 1024));
    // Stored, one upload is more than the whole hour's budget; uploaded, about a seventh of it.
    expect(message.length * members.length).toBeGreaterThan(budget);
    const fitting = Math.floor(budget / message.length);
    expect(fitting).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < fitting; i += 1) {
      const sent = await upload(alice, message);
      expect(sent.status).toBe(200);
      expect(sent.body).toEqual({ stored: members.length });
    }
    const flood = await upload(alice, message);
    expect(flood.status).toBe(429);
    expect(flood.body.error.code).toBe('RATE_LIMITED');
    expect(flood.body.retryAfterSeconds).toBeGreaterThan(0);
    for (const member of members) {
      expect(
        await budgeted.relay.context.envelopes.countFor(member.accountId, member.deviceId),
      ).toBe(fitting);
    }
  }, 60_000);
});

describe('an account whose identity key no share can be sealed to', () => {
  it('is refused as a recipient (400), and nothing is stored for the others', async () => {
    const alice = await registerMember(relay.url);
    const bob = await registerMember(relay.url);
    // A point of small order: X25519 with it gives all zeros. No libsignal identity is one (a
    // genuine key has a private key, that signs prekeys), so no genuine sender reaches it.
    const odd = await TestDevice.register(relay.url, {
      identityKey: Buffer.concat([Buffer.of(5), Buffer.alloc(32)]).toString('base64'),
    });
    const recipients = [accountOf(bob), accountOf(odd)];
    const sender = await senderFor(alice, recipients);
    const refused = await upload(alice, await sender.encrypt(recipients, 'x'));
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('VALIDATION_FAILED');
    expect(refused.body.error.details).toContain(odd.accountId);
    expect(await countQueued(bob)).toBe(0);
    const fine = await upload(alice, await sender.encrypt([accountOf(bob)], 'y'));
    expect(fine.body).toEqual({ stored: 1 });
  });
});

interface EnvelopeRow {
  seq: number;
  id: string;
  type: number;
  account_id: string;
  content: string;
  stored_hour: string;
}

const envelopeRows = (dump: string): EnvelopeRow[] => {
  const lines = dump.split('\n');
  const rows: EnvelopeRow[] = [];
  for (const line of lines.slice(lines.indexOf('-- envelopes') + 1)) {
    if (line.startsWith('-- ')) break;
    rows.push(JSON.parse(line) as EnvelopeRow);
  }
  return rows;
};

describe('a dump after a multi upload', () => {
  it('holds ordinary envelopes: no upload or group id, unrelated positions and ids, the hour only, no bytes in common', async () => {
    const fresh = await createTestDatabase();
    const own = await startRelay(fresh.url);
    try {
      const alice = await registerMember(own.url);
      const members = await Promise.all([1, 2, 3].map(() => registerMember(own.url)));
      const memberLaptop = await TestDevice.link(members[0]!);
      const recipients = [
        accountOf(members[0]!, memberLaptop),
        accountOf(members[1]!),
        accountOf(members[2]!),
      ];
      const sender = await senderFor(alice, recipients);
      const title = 'Family group 9c41';
      const message = await sender.encrypt(recipients, `${title}: dinner at 8`);
      const sent = await upload(alice, message);
      expect(sent.body).toEqual({ stored: 4 });

      const dump = await dumpDatabase(fresh.url);
      const rows = envelopeRows(dump);
      expect(rows).toHaveLength(4);
      // The same columns as any envelope: nothing names an upload, a group or the sender.
      expect(Object.keys(rows[0]!).sort()).toEqual(
        [
          'account_id',
          'content',
          'device_id',
          'expires_at',
          'id',
          'seq',
          'stored_hour',
          'type',
          'urgent',
        ].sort(),
      );
      // No envelope names the sender (its account is in the accounts table, as any account's).
      const envelopeText = JSON.stringify(rows);
      expect(envelopeText).not.toContain(alice.accountId);
      expect(envelopeText).not.toContain(Buffer.from(alice.accountId).toString('hex'));
      // Nor anywhere: the sender key's id, the group's title, the text.
      expect(dump).not.toContain(sender.distributionId);
      expect(dump).not.toContain(Buffer.from(title).toString('hex'));
      expect(dump).not.toContain(title);
      for (const row of rows) expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/);
      // Positions count per device from random starts: those of one upload are far apart.
      const seqs = rows.map((row) => row.seq).sort((a, b) => a - b);
      for (let i = 1; i < seqs.length; i += 1) {
        expect(seqs[i]! - seqs[i - 1]!).toBeGreaterThan(1000);
      }
      for (const row of rows) {
        expect(new Date(row.stored_hour).getTime() % 3_600_000).toBe(0);
        expect(row.stored_hour).toBe(rows[0]!.stored_hour);
      }
      // Nor their bytes. libsignal's v2 shares of one upload all end in the same shared part
      // (its ephemeral key and ciphertext); the relay seals each share at rest to its account's
      // identity key under a fresh ephemeral key, so no two envelopes have as much as a key's
      // length (32 bytes) in common, and none holds any of the shared part.
      const contents = rows.map((row) => Buffer.from(row.content.replace(/^\\x/, ''), 'hex'));
      const sharedPart = parseMultiRecipientMessage(message, 1000)[0]!.share.subarray(1 + 48);
      for (const [i, content] of contents.entries()) {
        expect(rows[i]!.type).toBe(SEALED_SENDER_V2_AT_REST);
        expect(runInCommon(content, sharedPart, 32)).toBe(false);
        for (const other of contents.slice(i + 1))
          expect(runInCommon(content, other, 32)).toBe(false);
      }
      expect(dump).not.toContain(sharedPart.subarray(0, 32).toString('hex'));
      // And each recipient device opens its own, with its account's identity key.
      for (const [i, row] of rows.entries()) {
        const opened = await sender.open(row.account_id, { type: row.type, content: contents[i]! });
        expect(opened).toBe(`${title}: dinner at 8`);
      }
    } finally {
      await own.close();
      await fresh.drop();
    }
  });
});
