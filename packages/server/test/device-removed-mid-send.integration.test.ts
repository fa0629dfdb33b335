import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceSet, DeviceSetRequest } from '../src/repositories/envelopes.ts';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { GroupSender, registerMember, type RecipientAccount } from './support/group-sender.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * A recipient device removed between a send's device-set check and its insert: the insert's
 * foreign key refuses the rows, and the send checks the device set once more (message-sender.ts,
 * `store`). The race is forced by running the removal inside the device-set read, after it has
 * read. The recipients stay offline, so every send is written (no deliver-first). A
 * multi-recipient upload (a group message) takes the same path with its own read.
 */

let relay: TestRelay;
let drop: () => Promise<void>;
/** Runs after each device-set read, with what it read; may change what the send gets. */
let afterRead:
  ((requests: readonly DeviceSetRequest[], read: DeviceSet[]) => Promise<DeviceSet[]>) | undefined;
/** Runs after each read for a multi-recipient upload, with the accounts it read. */
let afterAccountsRead: ((accountIds: readonly string[]) => Promise<void>) | undefined;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url, { WS_DIRECT_WINDOW_MS: '0' });
  const envelopes = relay.relay.context.envelopes;
  const read = envelopes.devicesWithQueues;
  envelopes.devicesWithQueues = async (requests) => {
    const result = await read(requests);
    return afterRead ? afterRead(requests, result) : result;
  };
  const readAccounts = envelopes.devicesOfAccounts;
  envelopes.devicesOfAccounts = async (accountIds, sender) => {
    const result = await readAccounts(accountIds, sender);
    await afterAccountsRead?.(accountIds);
    return result;
  };
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const storedFor = async (account: string): Promise<{ device_id: number }[]> =>
  (
    await relay.relay.context.database.pool.query<{ device_id: number }>(
      'SELECT device_id FROM envelopes WHERE account_id = $1',
      [account],
    )
  ).rows;

/** Bob with a second device, and Alice; `reads` counts the device-set reads of Bob's account. */
const people = async () => {
  const alice = await TestDevice.register(relay.url);
  const bob = await TestDevice.register(relay.url);
  const bob2 = await TestDevice.link(bob);
  const reads = { count: 0 };
  const readsOfBob = (requests: readonly DeviceSetRequest[]) =>
    requests.filter((r) => r.recipient === bob.accountId).length;
  return { alice, bob, bob2, reads, readsOfBob };
};

describe('a recipient device removed between the check and the insert', () => {
  it('answers 409 naming it as extra, stores nothing, and a second attempt is checked once', async () => {
    const { alice, bob, bob2, reads, readsOfBob } = await people();
    afterRead = async (requests, read) => {
      const ofBob = readsOfBob(requests);
      reads.count += ofBob;
      if (ofBob > 0 && reads.count === 1) {
        const removed = await bob.request('DELETE', `/v1/devices/${bob2.deviceId}`);
        expect(removed.status).toBe(204);
      }
      return read;
    };
    try {
      const sent = await alice.send(bob.accountId, [bob.address(), bob2.address()], 'hello');
      expect([sent.status, sent.body]).toEqual([
        409,
        expect.objectContaining({
          error: expect.objectContaining({ code: 'MISMATCHED_DEVICES' }),
          missingDevices: [],
          extraDevices: [bob2.deviceId],
        }),
      ]);
      // Checked once more after the refused insert, and not again.
      expect(reads.count).toBe(2);
      // All or nothing: not even Bob's remaining device got the refused send.
      expect(await storedFor(bob.accountId)).toEqual([]);

      // The same request again: refused at the first check, without an insert to retry.
      const again = await alice.send(bob.accountId, [bob.address(), bob2.address()], 'hello');
      expect([again.status, again.body?.extraDevices]).toEqual([409, [bob2.deviceId]]);
      expect(reads.count).toBe(3);
      // What the sender does after the 409: drop the extra device, and it is stored once.
      const fixed = await alice.send(bob.accountId, [bob.address()], 'hello');
      expect([fixed.status, fixed.body]).toEqual([200, { stored: 1 }]);
      expect(reads.count).toBe(4);
      expect(await storedFor(bob.accountId)).toEqual([{ device_id: bob.deviceId }]);
    } finally {
      afterRead = undefined;
    }
  });

  it('retries once only: a second refused insert is the answer, not a third check', async () => {
    const { alice, bob, bob2, reads, readsOfBob } = await people();
    let first: DeviceSet[] = [];
    afterRead = async (requests, read) => {
      const ofBob = readsOfBob(requests);
      reads.count += ofBob;
      if (ofBob === 0) return read;
      if (reads.count === 1) {
        first = read;
        const removed = await bob.request('DELETE', `/v1/devices/${bob2.deviceId}`);
        expect(removed.status).toBe(204);
        return read;
      }
      // The check again sees the set from before the removal (as a read that raced it would),
      // so its insert is refused too.
      return reads.count === 2 ? first : read;
    };
    try {
      const sent = await alice.send(bob.accountId, [bob.address(), bob2.address()], 'hello');
      expect(sent.status).toBe(500);
      expect(reads.count).toBe(2);
      expect(await storedFor(bob.accountId)).toEqual([]);
    } finally {
      afterRead = undefined;
    }
  });

  it('answers a multi-recipient upload the same way: 409 for that account, nothing stored', async () => {
    const alice = await registerMember(relay.url);
    const bob = await registerMember(relay.url);
    const bobLaptop = await TestDevice.link(bob);
    const carol = await registerMember(relay.url);
    const accountOf = (...devices: TestDevice[]): RecipientAccount => ({
      accountId: devices[0]!.accountId,
      devices: devices.map((device) => device.address()),
    });
    const sender = new GroupSender(alice.accountId, alice.deviceId);
    for (const account of [accountOf(bob, bobLaptop), accountOf(carol)])
      await sender.addRecipient(account);
    const upload = async (accounts: RecipientAccount[]) =>
      alice.request('PUT', '/v1/messages/multi', {
        type: 2,
        content: (await sender.encrypt(accounts, 'x')).toString('base64'),
      });
    let reads = 0;
    afterAccountsRead = async (accountIds) => {
      if (!accountIds.includes(bob.accountId)) return;
      reads += 1;
      if (reads === 1) {
        const removed = await bob.request('DELETE', `/v1/devices/${bobLaptop.deviceId}`);
        expect(removed.status).toBe(204);
      }
    };
    try {
      const sent = await upload([accountOf(bob, bobLaptop), accountOf(carol)]);
      expect([sent.status, sent.body?.error?.code, sent.body?.accounts]).toEqual([
        409,
        'MISMATCHED_DEVICES',
        [
          {
            accountId: bob.accountId,
            missingDevices: [],
            extraDevices: [bobLaptop.deviceId],
            staleDevices: [],
          },
        ],
      ]);
      expect(reads).toBe(2);
      // All or nothing: Carol, whose set was right, got nothing either.
      expect([await storedFor(bob.accountId), await storedFor(carol.accountId)]).toEqual([[], []]);
      const fixed = await upload([accountOf(bob), accountOf(carol)]);
      expect([fixed.status, fixed.body]).toEqual([200, { stored: 2 }]);
      expect(reads).toBe(3);
    } finally {
      afterAccountsRead = undefined;
    }
  });
});
