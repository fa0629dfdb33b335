import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChallengesRepository, type UsedChallenge } from '../src/repositories/challenges.ts';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Logins use their challenges up many at a time (one statement for a group:
 * repositories/challenges.ts, app.ts): each challenge is won exactly once, whatever else shares
 * the statement, and only a winner's device is recorded as seen today.
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

const expirySeconds = Math.floor(Date.now() / 1000) + 60;
const challengeOf = (device: TestDevice, nonceHash = randomBytes(32)): UsedChallenge => ({
  nonceHash,
  expirySeconds,
  accountId: device.accountId,
  deviceId: device.deviceId,
});

const lastSeen = async (device: TestDevice): Promise<string> => {
  const result = await relay.relay.context.database.pool.query<{ day: string }>(
    'SELECT last_seen_on::text AS day FROM devices WHERE account_id = $1 AND device_id = $2',
    [device.accountId, device.deviceId],
  );
  return result.rows[0]?.day ?? 'none';
};

describe('used challenges', () => {
  it('answers each challenge of a group in the order given: a repeated or used one loses', async () => {
    const challenges = createChallengesRepository(relay.relay.context.database.db);
    const [alice, bob, carol] = await Promise.all(
      [0, 1, 2].map(() => TestDevice.register(relay.url)),
    );
    const used = challengeOf(alice as TestDevice);
    expect(await challenges.markUsed([used])).toEqual([true]);
    const twice = randomBytes(32);
    const { pool } = relay.relay.context.database;
    await pool.query("UPDATE devices SET last_seen_on = '2000-01-01'");
    const answers = await challenges.markUsed([
      challengeOf(bob as TestDevice, twice),
      used, // used before
      challengeOf(carol as TestDevice, twice), // the same nonce again: the first one won it
      challengeOf(alice as TestDevice),
    ]);
    expect(answers).toEqual([true, false, false, true]);
    const today = (await pool.query<{ day: string }>('SELECT current_date::text AS day')).rows[0]
      ?.day;
    // Seen today: the winners' devices; carol's only challenge lost.
    expect(await Promise.all([alice, bob, carol].map((d) => lastSeen(d as TestDevice)))).toEqual([
      today,
      today,
      '2000-01-01',
    ]);
    expect(await challenges.markUsed([])).toEqual([]);
  });

  it('gives concurrent logins their own answers through the shared statement', async () => {
    const devices = await Promise.all([0, 1, 2, 3].map(() => TestDevice.register(relay.url)));
    const context = relay.relay.context;
    const shared = randomBytes(32);
    const answers = await Promise.all([
      ...devices.map((device) => context.useChallenge(challengeOf(device))),
      ...devices.map((device) => context.useChallenge(challengeOf(device, shared))),
    ]);
    // The first call went alone; the other seven shared the next statement, in the order asked,
    // and of the one nonce submitted four times in it the first submission won.
    expect(answers).toEqual([true, true, true, true, true, false, false, false]);
  });
});
