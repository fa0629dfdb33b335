import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, type HttpResult } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Rate limits against an abusive client, with a legitimate one beside it: one loopback address
 * (127.0.0.3) exhausts the limits on registration, bundle fetches, sends and TURN credentials and
 * meets 429 RATE_LIMITED with Retry-After on each; another address (127.0.0.2), on the same relay
 * at the same time, is served throughout. Registration and bundle fetches are counted per client
 * address (bundle fetches per account too), sends per sending device and recipient account, TURN
 * credentials per account (docs/configuration.md): whichever bucket trips, it is never one the
 * legitimate client shares. Small limits, so that the abuse takes a few requests.
 */

const ABUSER = '127.0.0.3';
const LEGITIMATE = '127.0.0.2';
/** Where the target of the bundle fetches and sends registers from: neither client's bucket. */
const TARGET = '127.0.0.4';

let database: { url: string; drop: () => Promise<void> };
let relay: TestRelay;

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await startRelay(database.url, {
    RATE_LIMIT_REGISTRATION: '3/600',
    // Per requesting account and per client address; the per-pair bucket stays out of the way.
    RATE_LIMIT_PREKEY_REQUESTER: '4/600',
    RATE_LIMIT_PREKEY_FETCH: '1000/1',
    RATE_LIMIT_MESSAGES: '5/600',
    RATE_LIMIT_TURN: '3/600',
    // No TURN server is needed to mint credentials.
    TURN_URLS: 'turn:turn.example.org:3478?transport=udp',
    TURN_SECRET: randomBytes(32).toString('hex'),
  });
});
afterAll(async () => {
  await relay?.close();
  await database?.drop();
});

const expectRateLimited = (reply: HttpResult, limit: string): void => {
  expect({ limit, status: reply.status, code: reply.body?.error?.code }).toEqual({
    limit,
    status: 429,
    code: 'RATE_LIMITED',
  });
  const retryAfter = reply.headers.get('retry-after');
  expect(retryAfter).toMatch(/^\d+$/);
  expect(Number(retryAfter)).toBeGreaterThan(0);
  expect(Number(retryAfter)).toBeLessThanOrEqual(600);
  expect(reply.body.retryAfterSeconds).toBe(Number(retryAfter));
};

/** Repeats `request` until the relay answers something other than 200 (at most `limit` + 5). */
const untilRefused = async (
  request: () => Promise<HttpResult>,
  limit: number,
): Promise<{ served: number; refusal: HttpResult }> => {
  for (let served = 0; served <= limit + 5; served += 1) {
    const reply = await request();
    if (reply.status !== 200) return { served, refusal: reply };
  }
  throw new Error(`still served after ${limit + 5} requests`);
};

describe('rate limits hit one address, not another', () => {
  it('answers the abusive address 429 with Retry-After on registration, bundle fetches, sends and TURN credentials, and serves the other address throughout', async () => {
    const target = await TestDevice.register(relay.url, {}, TARGET);
    const content = Buffer.from('hello');

    // Registration: three accounts from the abusive address, then 429.
    const abusers: TestDevice[] = [];
    const registration = await untilRefused(async () => {
      const device = new TestDevice(relay.url, ABUSER);
      const reply = await device.post('/v1/accounts', device.registrationBody());
      if (reply.status === 200) {
        device.accountId = reply.body.accountId;
        device.deviceId = reply.body.deviceId;
        await device.authenticate();
        abusers.push(device);
      }
      return reply;
    }, 3);
    expect(registration.served).toBe(3);
    expectRateLimited(registration.refusal, 'registration');
    const [abuser, secondAbuser] = abusers as [TestDevice, TestDevice];
    // The other address registers at once.
    const legitimate = await TestDevice.register(relay.url, {}, LEGITIMATE);

    // Bundle fetches: the address's budget, whichever of its accounts asks.
    const bundles = await untilRefused(
      () => abuser.request('GET', `/v1/keys/${target.accountId}/*`),
      4,
    );
    expect(bundles.served).toBe(4);
    expectRateLimited(bundles.refusal, 'bundle fetch');
    expectRateLimited(
      await secondAbuser.request('GET', `/v1/keys/${target.accountId}/*`),
      'bundle fetch, another account on the same address',
    );

    // Sends: the abusive device's budget towards the target.
    const sends = await untilRefused(
      () => abuser.send(target.accountId, [target.address()], content),
      5,
    );
    expect(sends.served).toBe(5);
    expectRateLimited(sends.refusal, 'send');

    // TURN credentials: the abusive account's budget.
    const turn = await untilRefused(() => abuser.request('GET', '/v1/turn'), 3);
    expect(turn.served).toBe(3);
    expectRateLimited(turn.refusal, 'TURN credentials');

    // Meanwhile, from the other address, everything works, more than once, and the abusive
    // address is still refused after it.
    for (let i = 0; i < 2; i += 1) {
      expect((await legitimate.request('GET', `/v1/keys/${target.accountId}/*`)).status).toBe(200);
      expect((await legitimate.send(target.accountId, [target.address()], content)).status).toBe(
        200,
      );
      expect((await legitimate.request('GET', '/v1/turn')).status).toBe(200);
    }
    expect((await TestDevice.register(relay.url, {}, LEGITIMATE)).accountId).not.toBe('');
    const another = new TestDevice(relay.url, ABUSER);
    expectRateLimited(
      await another.post('/v1/accounts', another.registrationBody()),
      'registration, again',
    );
    expectRateLimited(
      await abuser.request('GET', `/v1/keys/${target.accountId}/*`),
      'bundle fetch, again',
    );
    expectRateLimited(
      await abuser.send(target.accountId, [target.address()], content),
      'send, again',
    );
    expectRateLimited(await abuser.request('GET', '/v1/turn'), 'TURN credentials, again');
  });
});
