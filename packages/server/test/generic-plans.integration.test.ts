import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/database.ts';
import { createEnvelopesRepository } from '../src/repositories/envelopes.ts';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * The relay's connections plan each named statement once (db/database.ts): PostgreSQL's default
 * re-planned the send path's device-set lookup on every execution. Read back from the session's
 * own pg_prepared_statements, through a pool of one connection.
 */

let relay: TestRelay;
let database: Database;
let drop: () => Promise<void>;

beforeAll(async () => {
  const created = await createTestDatabase();
  drop = created.drop;
  relay = await startRelay(created.url); // migrates the schema
  database = openDatabase(created.url, 1, pino({ level: 'silent' }));
});
afterAll(async () => {
  await database?.close();
  await relay?.close();
  await drop?.();
});

describe('named statements', () => {
  it('run on a generic plan from the first execution on', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const envelopes = createEnvelopesRepository(database.pool, 30, {
      maxEnvelopes: 1000,
      maxBytes: 1 << 20,
    });
    const request = {
      recipient: bob.accountId,
      sender: { accountId: alice.accountId, deviceId: alice.deviceId },
    };
    for (let i = 0; i < 8; i += 1) {
      const [set] = await envelopes.devicesWithQueues([request]);
      expect(set?.senderExists).toBe(true);
      expect([...(set?.devices.keys() ?? [])]).toEqual([bob.deviceId]);
    }
    const plans = await database.pool.query<{ generic: number; custom: number }>(
      `SELECT generic_plans::int AS generic, custom_plans::int AS custom
       FROM pg_prepared_statements WHERE name = 'devices-with-queues'`,
    );
    expect(plans.rows).toEqual([{ generic: 8, custom: 0 }]);
  });
});
