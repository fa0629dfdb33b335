import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENTS_CHANNEL } from '../src/db/events.ts';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Logins and authenticated requests read devices' authentication keys many at a time (one query
 * for a group: repositories/devices.ts, app.ts): each caller must get its own device's key, and
 * nothing for a device that does not exist, whatever else shares the query. Message sockets
 * logging in at once take their connection numbers in one statement, on the same terms.
 */

let relay: TestRelay;
let drop: () => Promise<void>;
let databaseUrl: string;

beforeAll(async () => {
  const created = await createTestDatabase();
  drop = created.drop;
  databaseUrl = created.url;
  relay = await startRelay(created.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

describe('device authentication keys', () => {
  it('answers each key of a group read, in the order asked', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const { devices } = relay.relay.context;
    const keys = await devices.authKeys([
      { accountId: bob.accountId, deviceId: bob.deviceId },
      { accountId: alice.accountId, deviceId: 2 }, // no such device
      { accountId: randomUUID(), deviceId: 1 }, // no such account
      { accountId: alice.accountId, deviceId: alice.deviceId },
      { accountId: bob.accountId, deviceId: bob.deviceId },
    ]);
    expect(keys).toEqual([bob.authPublic, undefined, undefined, alice.authPublic, bob.authPublic]);
    expect(await devices.authKeys([])).toEqual([]);
  });

  // That a read starts only after it was asked for (so that it sees a device removed before) is
  // GroupRead's to keep: group-read.test.ts.
  it('gives concurrent callers their own answers, and none for a device removed before', async () => {
    const owners = [];
    for (let i = 0; i < 6; i += 1) owners.push(await TestDevice.register(relay.url));
    const context = relay.relay.context;
    const asked = owners.flatMap((owner) => [
      context.authKeyOf(owner.accountId, owner.deviceId),
      context.deviceExists(owner.accountId, owner.deviceId + 1),
    ]);
    expect(await Promise.all(asked)).toEqual(owners.flatMap((owner) => [owner.authPublic, false]));
    const [gone, kept] = owners as [TestDevice, TestDevice];
    await context.database.pool.query('DELETE FROM accounts WHERE id = $1', [gone.accountId]);
    expect(
      await Promise.all([
        context.deviceExists(gone.accountId, gone.deviceId),
        context.deviceExists(kept.accountId, kept.deviceId),
      ]),
    ).toEqual([false, true]);
  });
});

describe('announced connections', () => {
  it('gives each existing device of a group its own, newer number, and tells every instance', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const listener = new pg.Client({ connectionString: databaseUrl });
    await listener.connect();
    const heard: unknown[] = [];
    listener.on('notification', (message) => {
      const event = JSON.parse(message.payload ?? '{}') as { t?: string };
      if (event.t === 'connected') heard.push(event);
    });
    await listener.query(`LISTEN ${EVENTS_CHANNEL}`);
    try {
      const context = relay.relay.context;
      const { devices } = context;
      const [before] = await devices.announceConnections([alice]);
      const seqs = await devices.announceConnections([
        { accountId: bob.accountId, deviceId: bob.deviceId },
        { accountId: alice.accountId, deviceId: 2 }, // no such device
        { accountId: alice.accountId, deviceId: alice.deviceId },
        { accountId: bob.accountId, deviceId: bob.deviceId },
      ]);
      expect(seqs[1]).toBeUndefined();
      const given = [seqs[0], seqs[2], seqs[3]] as number[];
      expect(new Set(given).size).toBe(3);
      for (const seq of given) expect(seq).toBeGreaterThan(before as number);
      // Three numbers drawn, none for the device that does not exist (nothing else logs in here).
      const drawn = await context.database.pool.query<{ last: string }>(
        'SELECT last_value AS last FROM connection_seq',
      );
      expect(Number(drawn.rows[0]?.last)).toBe((before as number) + 3);
      const told = (device: TestDevice, s: number | undefined) => ({
        t: 'connected',
        a: device.accountId,
        d: device.deviceId,
        s,
      });
      await expect.poll(() => heard.length).toBe(4);
      // Within a group the numbers follow no particular order: each event carries its own.
      const bySeq = (a: { s?: number }, b: { s?: number }) => (a.s ?? 0) - (b.s ?? 0);
      expect([...(heard as { s?: number }[])].sort(bySeq)).toEqual(
        [told(alice, before), told(bob, seqs[0]), told(alice, seqs[2]), told(bob, seqs[3])].sort(
          bySeq,
        ),
      );
      expect(await devices.announceConnections([])).toEqual([]);
    } finally {
      await listener.end();
    }
  });
});
