import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, dumpDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * What a thief of the database learns from the queue about who sent what. The case: Alice sends
 * to Bob, then (as the client does) a sync copy to her own other device. The envelope for Bob has
 * no sender; the copy is addressed to Alice. Had the two rows consecutive positions, a dump would
 * name Alice as the sender of Bob's message.
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

interface EnvelopeRow {
  seq: number;
  id: string;
  account_id: string;
  device_id: number;
  type: number;
  content: string;
  urgent: boolean;
  stored_hour: string;
  expires_at: string;
}

const envelopeRows = (dump: string): EnvelopeRow[] => {
  const lines = dump.split('\n');
  const start = lines.indexOf('-- envelopes');
  const rows: EnvelopeRow[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('-- ')) break;
    rows.push(JSON.parse(line) as EnvelopeRow);
  }
  return rows;
};

describe('a dump of the queue', () => {
  it('does not link a message to the sync copy stored right after it by position, id or time', async () => {
    const alice = await TestDevice.register(relay.url);
    const aliceLaptop = await TestDevice.link(alice);
    const bob = await TestDevice.register(relay.url);
    const carol = await TestDevice.register(relay.url);

    // Some traffic before, the pair, and some after.
    expect((await carol.send(bob.accountId, [bob.address()], 'from carol')).status).toBe(200);
    expect((await alice.send(bob.accountId, [bob.address()], 'to bob')).status).toBe(200);
    expect((await alice.send(alice.accountId, [aliceLaptop.address()], 'sync copy')).status).toBe(
      200,
    );
    expect((await bob.send(carol.accountId, [carol.address()], 'to carol')).status).toBe(200);

    const rows = envelopeRows(await dumpDatabase(databaseUrl));
    expect(rows).toHaveLength(4);
    // No column names a sender.
    expect(Object.keys(rows[0] ?? {}).sort()).toEqual(
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
    const forBob = rows.filter((row) => row.account_id === bob.accountId);
    const copy = rows.find((row) => row.account_id === alice.accountId);
    const message = forBob.find(
      (row) => Buffer.from(row.content.replace(/^\\x/, ''), 'hex').toString() === 'to bob',
    );
    expect(copy && message).toBeTruthy();
    if (!copy || !message) return;

    // Positions count per device: Bob's two envelopes are consecutive in his queue, in order...
    const bobSeqs = forBob.map((row) => row.seq).sort((a, b) => a - b);
    expect(bobSeqs[1]).toBe((bobSeqs[0] ?? 0) + 1);
    // ...but the copy's position says nothing about Bob's: each device's counter starts at a
    // random point (up to 10^12), so positions of different devices are far apart and unrelated.
    expect(Math.abs(copy.seq - message.seq)).toBeGreaterThan(1000);
    // Ids are random (version 4), not issued in order.
    for (const row of rows) expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/);
    // Time: the hour only, the same for all four.
    for (const row of rows) {
      expect(new Date(row.stored_hour).getTime() % 3_600_000).toBe(0);
      expect(row.stored_hour).toBe(message.stored_hour);
    }
  });
});
