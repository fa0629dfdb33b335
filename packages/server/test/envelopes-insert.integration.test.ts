import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { committedEnvelopes, type NewEnvelope } from '../src/repositories/envelopes.ts';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * One insert carries a whole batch's contents as a single bytea with each row's offset and length
 * (repositories/envelopes.ts): every row must get back exactly its own bytes, in each device's
 * input order, whatever the sizes and however the devices interleave.
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

describe('envelopes.insert', () => {
  it('stores each row of a batch with its own content, in input order per device', async () => {
    const bob = await TestDevice.register(relay.url);
    const carol = await TestDevice.register(relay.url);
    const sizes = [1, 0, 1024, 3, 65_536, 17, 2, 4096, 1, 300];
    const rows: NewEnvelope[] = sizes.map((size, i) => {
      const recipient = i % 3 === 0 ? carol : bob;
      return {
        id: randomUUID(),
        accountId: recipient.accountId,
        deviceId: recipient.deviceId,
        type: 1 + (i % 2),
        content: randomBytes(size),
        urgent: i % 2 === 0,
      };
    });
    const { envelopes } = relay.relay.context;
    const queued = await envelopes.insert(rows);
    const handedOver = committedEnvelopes(rows, queued);

    for (const device of [bob, carol]) {
      const mine = rows.filter((row) => row.accountId === device.accountId);
      const stored = await envelopes.fetchAfter(device.accountId, device.deviceId, 0, 100);
      const expected = mine.map((row) => ({
        id: row.id,
        type: row.type,
        content: row.content.toString('hex'),
        urgent: row.urgent,
      }));
      const view = (
        list: readonly { id: string; type: number; content: Buffer; urgent: boolean }[],
      ) =>
        list.map(({ id, type, content, urgent }) => ({
          id,
          type,
          content: content.toString('hex'),
          urgent,
        }));
      expect(view(stored)).toEqual(expected);
      const handed = handedOver.get(`${device.accountId}.${device.deviceId}`) ?? [];
      expect(view(handed)).toEqual(expected);
      expect(handed.map((envelope) => envelope.seq)).toEqual(
        stored.map((envelope) => envelope.seq),
      );
      expect(await envelopes.usage(device.accountId, device.deviceId)).toEqual({
        envelopes: mine.length,
        bytes: mine.reduce((sum, row) => sum + row.content.length, 0),
      });
    }
  });
});
