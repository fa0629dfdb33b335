import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * A failing query must not put ids in the log: the ORM's error message lists the query's
 * parameters (account ids), and PostgreSQL's messages can quote values. The test makes real
 * queries fail by renaming the tables they use, then reads every log line the relay wrote.
 */

let relay: TestRelay;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const query = (text: string) => relay.relay.context.database.pool.query(text);

describe('failed queries in the log', () => {
  it('logs only the SQLSTATE and a generic message, never the ids in the query', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    const before = relay.logs.length;

    await query('ALTER TABLE devices RENAME TO devices_moved');
    try {
      // The ORM's query (the device of a token still exists?) fails: 42P01 undefined_table.
      const keys = await alice.request('GET', `/v1/keys/${bob.accountId}/*`);
      expect(keys.status).toBe(500);
      const challenge = await alice.request('POST', '/v1/auth/token', {
        accountId: alice.accountId,
        deviceId: alice.deviceId,
        nonce: Buffer.alloc(32).toString('base64'),
        signature: Buffer.alloc(64).toString('base64'),
      });
      expect(challenge.status).toBeGreaterThanOrEqual(400);
    } finally {
      await query('ALTER TABLE devices_moved RENAME TO devices');
    }
    // Offline, so that the send is written: a connected recipient's acknowledgement would make
    // it durable without the table (deliver first).
    await socket.close();
    await query('ALTER TABLE envelopes RENAME TO envelopes_moved');
    try {
      // The raw-SQL hot path (the insert) fails the same way.
      const sent = await alice.send(bob.accountId, [bob.address()], 'hello');
      expect(sent.status).toBe(500);
    } finally {
      await query('ALTER TABLE envelopes_moved RENAME TO envelopes');
    }

    const written = relay.logs.slice(before);
    const text = written.join('\n');
    for (const id of [alice.accountId, bob.accountId]) {
      expect({ id, logged: text.includes(id) }).toEqual({ id, logged: false });
    }
    expect(text).not.toMatch(/Failed query|params:/);
    const failures = written.filter((line) => line.includes('"code":"42P01"'));
    // Not vacuous: the failures were logged, with PostgreSQL's code.
    expect(failures.length).toBeGreaterThanOrEqual(2);
    expect(failures.every((line) => line.includes('database query failed'))).toBe(true);
  });
});
