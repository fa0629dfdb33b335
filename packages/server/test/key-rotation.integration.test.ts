import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, TestDevice } from './support/client.ts';
import { createTestDatabase } from './support/database.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Rotating JWT_SECRET without downtime, as docs/operations.md describes it, with instances on one
 * database switching one at a time: every instance always accepts the tokens and login challenges
 * every other instance issued, whichever key signed them.
 */
const OLD = randomBytes(32).toString('base64');
const NEW = randomBytes(32).toString('base64');

let drop: () => Promise<void>;
const relays: Record<string, TestRelay> = {};

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  const start = (env: Record<string, string>) => startRelay(database.url, env);
  // Before the rotation; step 1 (every instance learns the new key); step 2 (signs with it,
  // still accepts the old one); and an instance that skipped step 1, to show what it prevents.
  relays.before = await start({ JWT_SECRET: OLD });
  relays.step1 = await start({ JWT_SECRET: OLD, JWT_VERIFY_SECRETS: NEW });
  relays.step2 = await start({ JWT_SECRET: NEW, JWT_VERIFY_SECRETS: OLD });
  relays.after = await start({ JWT_SECRET: NEW });
});
afterAll(async () => {
  for (const relay of Object.values(relays)) await relay.close();
  await drop?.();
});

/** The status of an authenticated request carrying `token` to `relay`. */
const statusWith = async (relay: TestRelay, token: string): Promise<number> =>
  (await http(relay.url, 'GET', '/v1/devices', undefined, token)).status;

/** A challenge from one instance redeemed for a token at another. */
const loginAcross = async (device: TestDevice, from: TestRelay, to: TestRelay): Promise<number> => {
  const challenge = await http(from.url, 'POST', '/v1/auth/challenge', {
    accountId: device.accountId,
    deviceId: device.deviceId,
  });
  const nonce = challenge.body.nonce as string;
  const token = await http(to.url, 'POST', '/v1/auth/token', {
    accountId: device.accountId,
    deviceId: device.deviceId,
    nonce,
    signature: device.signChallenge(nonce),
  });
  return token.status;
};

describe('rotating JWT_SECRET across instances', () => {
  it('accepts tokens signed with either key wherever that key is listed', async () => {
    const device = await TestDevice.register(relays.before!.url);
    const oldToken = device.token;
    device.baseUrl = relays.step2!.url;
    const newToken = await device.authenticate();

    expect(await statusWith(relays.step1!, newToken)).toBe(200);
    expect(await statusWith(relays.step2!, oldToken)).toBe(200);
    expect(await statusWith(relays.step2!, newToken)).toBe(200);
    // Controls: without the other key listed, the token is refused.
    expect(await statusWith(relays.before!, newToken)).toBe(401);
    expect(await statusWith(relays.after!, oldToken)).toBe(401);
  });

  it('accepts login challenges sealed with either key', async () => {
    const device = await TestDevice.register(relays.before!.url);
    expect(await loginAcross(device, relays.step1!, relays.step2!)).toBe(200);
    expect(await loginAcross(device, relays.step2!, relays.step1!)).toBe(200);
    expect(await loginAcross(device, relays.step2!, relays.before!)).toBe(401);
  });
});
