import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONTENT_BYTES } from '@privcomm/wire';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket, type HttpResult } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Disk: what strangers can make the relay store. Two relay instances share one database, as
 * behind a load balancer; the caps are scaled down (4 MiB per queue instead of 64) so the attack
 * runs in seconds, and the same code enforces the defaults.
 */

const MAX_ENVELOPES = 1000;
const MAX_BYTES = 4 * 1024 * 1024;
const ATTEMPTED_BYTES = 128 * 1024 * 1024;

let database: { url: string; drop: () => Promise<void> };
let pool: pg.Pool;
let east: TestRelay;
let west: TestRelay;

beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  const env = {
    QUEUE_MAX_ENVELOPES: String(MAX_ENVELOPES),
    QUEUE_MAX_BYTES: String(MAX_BYTES),
    SEND_BYTES_PER_HOUR: String(64 * 1024 * 1024),
  };
  east = await startRelay(database.url, env);
  west = await startRelay(database.url, env);
});
afterAll(async () => {
  await east?.close();
  await west?.close();
  await pool?.end();
  await database?.drop();
});

/** What the device's queue really holds, counted from the envelopes themselves. */
const queued = async (device: TestDevice): Promise<{ envelopes: number; bytes: number }> => {
  const result = await pool.query<{ n: number; b: string | null }>(
    `SELECT count(*)::int AS n, sum(octet_length(content)) AS b FROM envelopes
     WHERE account_id = $1 AND device_id = $2`,
    [device.accountId, device.deviceId],
  );
  return { envelopes: result.rows[0]?.n ?? 0, bytes: Number(result.rows[0]?.b ?? 0) };
};

const expectRetryLater = (reply: HttpResult, code: string): void => {
  expect(reply.status).toBe(429);
  expect(reply.body.error.code).toBe(code);
  expect(reply.body.retryAfterSeconds).toBeGreaterThan(0);
  expect(reply.headers.get('retry-after')).toBe(String(reply.body.retryAfterSeconds));
};

describe('per-device queue caps', () => {
  it('8 accounts trying to store 128 MiB for one device meet 429 QUEUE_FULL; the queue never exceeds the caps', async () => {
    const victim = await TestDevice.register(east.url);
    const senders = await Promise.all(
      Array.from({ length: 8 }, (_, i) => TestDevice.register(i % 2 === 0 ? east.url : west.url)),
    );
    const content = randomBytes(MAX_CONTENT_BYTES);
    const perSender = Math.ceil(ATTEMPTED_BYTES / senders.length / content.length);
    const refusals: HttpResult[] = [];
    let accepted = 0;
    let highest = 0;
    // Each sender keeps going until refused: in parallel, through both instances.
    await Promise.all(
      senders.map(async (sender) => {
        for (let i = 0; i < perSender; i += 1) {
          const reply = await sender.send(victim.accountId, [victim.address()], content);
          if (reply.status !== 200) {
            refusals.push(reply);
            return;
          }
          accepted += 1;
          highest = Math.max(highest, (await queued(victim)).bytes);
        }
      }),
    );
    expect(refusals).toHaveLength(8);
    for (const refusal of refusals) expectRetryLater(refusal, 'QUEUE_FULL');
    const after = await queued(victim);
    expect(after.bytes).toBeLessThanOrEqual(MAX_BYTES);
    expect(highest).toBeLessThanOrEqual(MAX_BYTES);
    expect(after.envelopes).toBe(accepted);
    // Full to within one envelope: the cap, not something else, refused them.
    expect(after.bytes).toBeGreaterThan(MAX_BYTES - content.length);
    expect(await east.relay.context.envelopes.usage(victim.accountId, victim.deviceId)).toEqual(
      after,
    );

    // Once the device drains its queue, it takes envelopes again.
    const socket = await TestSocket.connect(west.wsUrl, victim);
    await socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'), 20_000);
    await expect.poll(async () => (await queued(victim)).envelopes, { timeout: 10_000 }).toBe(0);
    await socket.close();
    expect(await east.relay.context.envelopes.usage(victim.accountId, victim.deviceId)).toEqual({
      envelopes: 0,
      bytes: 0,
    });
    const [sender] = senders;
    expect((await sender!.send(victim.accountId, [victim.address()], content)).status).toBe(200);
  }, 120_000);

  it('with the shipped defaults, 8 accounts trying to store 128 MiB for one device stop at 64 MiB with 429 QUEUE_FULL', async () => {
    // Defaults only (the harness raises request-rate limits, not these): 64 MiB per queue,
    // 32 MiB per sending account an hour, so the queue cap is what refuses.
    const relay = await startRelay(database.url);
    try {
      const { maxBytes } = relay.relay.context.config.queue;
      expect(maxBytes).toBe(64 * 1024 * 1024);
      const victim = await TestDevice.register(relay.url);
      const senders = await Promise.all(
        Array.from({ length: 8 }, () => TestDevice.register(relay.url)),
      );
      const content = randomBytes(MAX_CONTENT_BYTES);
      const perSender = Math.ceil(ATTEMPTED_BYTES / senders.length / content.length);
      const refusals: HttpResult[] = [];
      await Promise.all(
        senders.map(async (sender) => {
          for (let i = 0; i < perSender; i += 1) {
            const reply = await sender.send(victim.accountId, [victim.address()], content);
            if (reply.status !== 200) {
              refusals.push(reply);
              return;
            }
          }
        }),
      );
      expect(refusals).toHaveLength(8);
      for (const refusal of refusals) expectRetryLater(refusal, 'QUEUE_FULL');
      const after = await queued(victim);
      expect(after.bytes).toBeLessThanOrEqual(maxBytes);
      expect(after.bytes).toBeGreaterThan(maxBytes - content.length);
    } finally {
      await relay.close();
    }
  }, 180_000);

  it('concurrent inserts on two instances stop exactly at the cap (the check inside the transaction)', async () => {
    const victim = await TestDevice.register(east.url);
    const row = {
      accountId: victim.accountId,
      deviceId: victim.deviceId,
      type: 1,
      content: randomBytes(MAX_CONTENT_BYTES),
      urgent: false,
    };
    const fits = Math.floor(MAX_BYTES / MAX_CONTENT_BYTES);
    // Straight to the repositories, past the early check, all at once from both instances.
    const outcomes = await Promise.allSettled(
      Array.from({ length: fits * 2 }, (_, i) =>
        (i % 2 === 0 ? east : west).relay.context.envelopes.insert([{ ...row, id: randomUUID() }]),
      ),
    );
    const stored = outcomes.filter((outcome) => outcome.status === 'fulfilled').length;
    expect(stored).toBe(fits);
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected')
        expect(outcome.reason).toMatchObject({ code: 'QUEUE_FULL' });
    }
    expect(await queued(victim)).toEqual({ envelopes: fits, bytes: fits * MAX_CONTENT_BYTES });
  });

  it('caps the number of envelopes too, and refuses a whole send when one device is full', async () => {
    const relay = await startRelay(database.url, { QUEUE_MAX_ENVELOPES: '5' });
    try {
      const alice = await TestDevice.register(relay.url);
      const bob = await TestDevice.register(relay.url);
      const bob2 = await TestDevice.link(bob);
      // Five to bob's linked device alone (sync-style, from bob's primary) fill its queue.
      for (let i = 0; i < 5; i += 1) {
        expect((await bob.send(bob.accountId, [bob2.address()], `own ${i}`)).status).toBe(200);
      }
      const both = [bob.address(), bob2.address()];
      expectRetryLater(await alice.send(bob.accountId, both, 'x'), 'QUEUE_FULL');
      // All or nothing: the primary's queue got nothing either.
      expect(await queued(bob)).toEqual({ envelopes: 0, bytes: 0 });
      expect((await queued(bob2)).envelopes).toBe(5);
    } finally {
      await relay.close();
    }
  });
});

describe('per-account byte budget', () => {
  it("refuses an account's sends with 429 RATE_LIMITED once it stored SEND_BYTES_PER_HOUR, whichever device sends", async () => {
    const budget = 1024 * 1024;
    const relay = await startRelay(database.url, { SEND_BYTES_PER_HOUR: String(budget) });
    try {
      const spammer = await TestDevice.register(relay.url);
      const content = randomBytes(MAX_CONTENT_BYTES);
      // Different recipients each time: no queue cap is involved.
      let stored = 0;
      let refusal: HttpResult | undefined;
      for (let i = 0; i < 20 && refusal === undefined; i += 1) {
        const recipient = await TestDevice.register(relay.url);
        const reply = await spammer.send(recipient.accountId, [recipient.address()], content);
        if (reply.status === 200) stored += content.length;
        else refusal = reply;
      }
      expect(refusal).toBeDefined();
      expectRetryLater(refusal!, 'RATE_LIMITED');
      expect(stored).toBeLessThanOrEqual(budget);
      expect(stored).toBeGreaterThan(budget - content.length);
      // The account's other device shares the budget; another account has its own.
      const linked = await TestDevice.link(spammer);
      const target = await TestDevice.register(relay.url);
      expectRetryLater(
        await linked.send(target.accountId, [target.address()], content),
        'RATE_LIMITED',
      );
      const other = await TestDevice.register(relay.url);
      expect((await other.send(target.accountId, [target.address()], content)).status).toBe(200);
    } finally {
      await relay.close();
    }
  }, 60_000);
});
