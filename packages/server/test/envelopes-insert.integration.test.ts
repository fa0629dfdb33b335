import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  committedEnvelopes,
  type NewEnvelope,
  type StoredEnvelope,
} from '../src/repositories/envelopes.ts';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * One insert carries a whole batch's contents as a single bytea with each row's offset and length
 * (repositories/envelopes.ts): every row must get back exactly its own bytes, in each device's
 * input order, whatever the sizes (empty ones too) and however the devices interleave; and the
 * positions the insert reports, from which the relay hands committed envelopes to its own
 * sockets without reading them back, must be the rows' positions in the table.
 */

let relay: TestRelay;
let drop: () => Promise<void>;

beforeAll(async () => {
  const created = await createTestDatabase();
  drop = created.drop;
  relay = await startRelay(created.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const view = (list: readonly (NewEnvelope | StoredEnvelope)[]) =>
  list.map(({ id, type, content, urgent }) => ({
    id,
    type,
    content: content.toString('hex'),
    urgent,
  }));

/** A byte bound no test row comes near. */
const MIB = 2 ** 20;

describe('envelopes.insert and fetchAfterMany', () => {
  it('stores each row of a batch with its own content, at the positions it reports', async () => {
    const bob = await TestDevice.register(relay.url);
    const carol = await TestDevice.register(relay.url);
    const row = (device: TestDevice, size: number, i: number): NewEnvelope => ({
      id: randomUUID(),
      accountId: device.accountId,
      deviceId: device.deviceId,
      type: 1 + (i % 2),
      content: randomBytes(size),
      urgent: i % 2 === 0,
    });
    const batches: NewEnvelope[][] = [
      // Mixed sizes, the two devices interleaved.
      [1, 0, 1024, 3, 65_536, 17, 2, 4096, 1, 300].map((size, i) =>
        row(i % 3 === 0 ? carol : bob, size, i),
      ),
      // One row, for a device that already has rows: its position follows theirs.
      [row(bob, 5, 0)],
      // Nothing but empty contents: a zero-length parameter.
      [row(carol, 0, 0), row(carol, 0, 1)],
    ];
    const { envelopes } = relay.relay.context;
    const handed = new Map<string, StoredEnvelope[]>();
    for (const batch of batches) {
      for (const [address, list] of committedEnvelopes(batch, await envelopes.insert(batch))) {
        handed.set(address, [...(handed.get(address) ?? []), ...list]);
      }
    }

    for (const device of [bob, carol]) {
      const mine = batches.flat().filter((r) => r.accountId === device.accountId);
      const [stored = []] = await envelopes.fetchAfterMany([
        {
          accountId: device.accountId,
          deviceId: device.deviceId,
          afterSeq: 0,
          limit: 100,
          maxBytes: MIB,
        },
      ]);
      expect(view(stored)).toEqual(view(mine));
      const handedOver = handed.get(`${device.accountId}.${device.deviceId}`) ?? [];
      expect(handedOver.map(({ id, seq }) => ({ id, seq }))).toEqual(
        stored.map(({ id, seq }) => ({ id, seq })),
      );
      expect(await envelopes.usage(device.accountId, device.deviceId)).toEqual({
        envelopes: mine.length,
        bytes: mine.reduce((sum, r) => sum + r.content.length, 0),
      });
    }
  });

  it('answers many queue reads in one query, each in the order asked, with its own limit', async () => {
    const bob = await TestDevice.register(relay.url);
    const carol = await TestDevice.register(relay.url);
    const dave = await TestDevice.register(relay.url);
    const { envelopes } = relay.relay.context;
    const rows = (device: TestDevice, count: number): NewEnvelope[] =>
      Array.from({ length: count }, (_, i) => ({
        id: randomUUID(),
        accountId: device.accountId,
        deviceId: device.deviceId,
        type: 1,
        content: Buffer.from(`${device.accountId} ${i}`),
        urgent: false,
      }));
    const bobs = rows(bob, 5);
    const carols = rows(carol, 3);
    // Interleaved in one insert: each device's positions are its own.
    await envelopes.insert([...bobs.slice(0, 2), ...carols, ...bobs.slice(2)]);
    const [first = [], second = []] = await envelopes.fetchAfterMany([
      { accountId: bob.accountId, deviceId: bob.deviceId, afterSeq: 0, limit: 2, maxBytes: MIB },
      { accountId: bob.accountId, deviceId: bob.deviceId, afterSeq: 0, limit: 100, maxBytes: MIB },
    ]);
    const afterSecond = first[1]?.seq ?? 0;
    const batches = await envelopes.fetchAfterMany([
      { accountId: dave.accountId, deviceId: dave.deviceId, afterSeq: 0, limit: 10, maxBytes: MIB },
      {
        accountId: carol.accountId,
        deviceId: carol.deviceId,
        afterSeq: 0,
        limit: 10,
        maxBytes: MIB,
      },
      {
        accountId: bob.accountId,
        deviceId: bob.deviceId,
        afterSeq: afterSecond,
        limit: 2,
        maxBytes: MIB,
      },
      { accountId: carol.accountId, deviceId: 2, afterSeq: 0, limit: 10, maxBytes: MIB },
    ]);
    expect(view(first)).toEqual(view(bobs.slice(0, 2)));
    expect(view(second)).toEqual(view(bobs));
    expect(batches.map(view)).toEqual([[], view(carols), view(bobs.slice(2, 4)), []]);
    expect(await envelopes.fetchAfterMany([])).toEqual([]);
    // An expired envelope is never delivered, even before the janitor deletes it.
    await relay.relay.context.database.pool.query(
      `UPDATE envelopes SET expires_at = now() - interval '1 second' WHERE id = $1`,
      [carols[1]?.id],
    );
    const [unexpired = []] = await envelopes.fetchAfterMany([
      {
        accountId: carol.accountId,
        deviceId: carol.deviceId,
        afterSeq: 0,
        limit: 10,
        maxBytes: MIB,
      },
    ]);
    expect(view(unexpired)).toEqual(view([carols[0], carols[2]] as NewEnvelope[]));
  });

  it('stops a read once the contents before the next envelope reach its byte bound', async () => {
    const erin = await TestDevice.register(relay.url);
    const { envelopes } = relay.relay.context;
    const rows: NewEnvelope[] = [100, 100, 100, 100].map((size) => ({
      id: randomUUID(),
      accountId: erin.accountId,
      deviceId: erin.deviceId,
      type: 1,
      content: Buffer.alloc(size, 7),
      urgent: false,
    }));
    await envelopes.insert(rows);
    const read = (limit: number, maxBytes: number, afterSeq = 0) => ({
      accountId: erin.accountId,
      deviceId: erin.deviceId,
      afterSeq,
      limit,
      maxBytes,
    });
    const batches = await envelopes.fetchAfterMany([
      read(10, 250), // 0, 100 and 200 bytes before: three
      read(10, 200), // the third has 200 before it: two
      read(10, 1), // the first always comes, however large
      read(2, 1000), // the count binds first
    ]);
    expect(batches.map((batch) => batch.length)).toEqual([3, 2, 1, 2]);
    expect(view(batches[0] ?? [])).toEqual(view(rows.slice(0, 3)));
    // Its bytes are counted from its own position: after the second, 100 bytes take the third.
    const [afterSecond = []] = await envelopes.fetchAfterMany([
      read(10, 100, batches[1]?.[1]?.seq),
    ]);
    expect(view(afterSecond)).toEqual(view(rows.slice(2, 3)));
  });
});
