import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CLOSE_CODES } from '@privcomm/wire';
import { createTestDatabase } from './support/database.ts';
import { http, TestDevice, TestSocket } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/** Login on the message socket by signature (docs/protocol.md), against a real relay. */

let relay: TestRelay;
let database: { url: string; drop: () => Promise<void> };

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await database?.drop();
});

const query = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
  relay.relay.context.database.pool.query<R>(text, values);

/** A socket opened for a login by signature, and its challenge's nonce. */
const challenged = async (target = relay) => {
  const socket = await TestSocket.open(target.wsUrl, 200, { login: true });
  return { socket, nonce: await socket.challenge() };
};

describe('login on the socket', () => {
  it('challenges with a fresh nonce, and answers a signature with the socket authenticated and a token for HTTP', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    expect((await alice.send(bob.accountId, [bob.address()], 'waiting for bob')).status).toBe(200);

    const first = await challenged();
    const second = await challenged();
    for (const { socket, nonce } of [first, second]) {
      expect(socket.frames[0]).toEqual({
        type: 'request',
        id: expect.any(Number),
        verb: 'auth.challenge',
        body: { nonce },
      });
      expect(Buffer.from(nonce, 'base64')).toHaveLength(32);
    }
    expect(first.nonce).not.toBe(second.nonce);
    await second.socket.close();

    const answer = await first.socket.request('auth', bob.socketLogin(first.nonce));
    expect(answer).toMatchObject({ status: 200 });
    expect(answer.body).toEqual({
      accountId: bob.accountId,
      deviceId: bob.deviceId,
      token: expect.any(String),
      expiresAt: expect.any(String),
    });
    const lifetime = Date.parse(answer.body.expiresAt) - Date.now();
    expect(lifetime).toBeGreaterThan(60_000);
    expect(lifetime).toBeLessThanOrEqual(5 * 60_000);
    // The token works for HTTP requests; the queue is delivered as after a token login.
    const devices = await http(relay.url, 'GET', '/v1/devices', undefined, answer.body.token);
    expect(devices.status).toBe(200);
    await first.socket.until(() => first.socket.texts().includes('waiting for bob'));
    await first.socket.close();
  });

  it('refuses, with 4401, a signature by another key, over another socket’s nonce, under the HTTP login’s context, or for a removed device', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const bobsLaptop = await TestDevice.link(bob);
    // Bob's open socket must not be replaced by any of these (a refused login announces nothing).
    const bobs = await TestSocket.connect(relay.wsUrl, bob);

    const attempts: ((nonce: string, other: string) => object)[] = [
      (nonce) => alice.socketLogin(nonce, bob.accountId, bob.deviceId),
      (_nonce, other) => bob.socketLogin(other),
      (nonce) => ({
        accountId: bob.accountId,
        deviceId: bob.deviceId,
        signature: bob.signChallenge(nonce),
      }),
      (nonce) => ({ ...bob.socketLogin(nonce), signature: '!'.repeat(88) }),
      (nonce) => ({ ...bob.socketLogin(nonce), deviceId: 9 }),
    ];
    for (const attempt of attempts) {
      const { socket, nonce } = await challenged();
      const other = await challenged();
      const answer = await socket.request('auth', attempt(nonce, other.nonce));
      expect(answer.status).toBe(CLOSE_CODES.UNAUTHENTICATED);
      await socket.closed;
      await other.socket.close();
    }
    // Nor is a token-less auth without a challenge, on a socket that did not ask for one.
    const plain = await TestSocket.open(relay.wsUrl);
    const unchallenged = await plain.request(
      'auth',
      bob.socketLogin(randomBytes(32).toString('base64')),
    );
    expect(unchallenged.status).toBe(CLOSE_CODES.UNAUTHENTICATED);

    // A removed device's signature is refused too.
    expect((await bob.request('DELETE', `/v1/devices/${bobsLaptop.deviceId}`)).status).toBe(204);
    const removed = await challenged();
    const refused = await removed.socket.request('auth', bobsLaptop.socketLogin(removed.nonce));
    expect(refused.status).toBe(CLOSE_CODES.UNAUTHENTICATED);

    expect(bobs.closeCode).toBeUndefined();
    expect((await bobs.request('ping')).status).toBe(200);
    await bobs.close();
  });

  it('takes a token on a socket opened for it, answering without a token; a second auth is not a login', async () => {
    const alice = await TestDevice.register(relay.url);
    const { socket } = await challenged();
    const answer = await socket.request('auth', { token: alice.token });
    expect(answer.body).toEqual({ accountId: alice.accountId, deviceId: alice.deviceId });
    const nonce = (socket.requests[0]?.body as unknown as { nonce: string }).nonce;
    const again = await socket.request('auth', alice.socketLogin(nonce));
    expect(again.status).toBe(404);
    await socket.close();
  });

  it('closes a socket that answers the challenge instead of sending auth', async () => {
    const { socket } = await challenged();
    const challenge = socket.requests[0]!;
    socket.respond(challenge.id, 200);
    expect(await socket.closed).toBe(CLOSE_CODES.UNAUTHENTICATED);
  });

  it('records the device as seen today, as an HTTP login does', async () => {
    const alice = await TestDevice.register(relay.url);
    await query("UPDATE devices SET last_seen_on = '2000-01-01' WHERE account_id = $1", [
      alice.accountId,
    ]);
    const socket = await TestSocket.connect(relay.wsUrl, alice, 200, { login: true });
    const seen = await query<{ today: boolean }>(
      'SELECT last_seen_on = current_date AS today FROM devices WHERE account_id = $1',
      [alice.accountId],
    );
    expect(seen.rows).toEqual([{ today: true }]);
    await socket.close();
  });

  it('refuses another value of login before the upgrade', async () => {
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${relay.wsUrl}?login=token`);
      ws.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      ws.on('open', () => reject(new Error('upgraded')));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(400);
  });
});

describe('login on the socket, rate-limited', () => {
  let limited: TestRelay;
  let limitedDatabase: { url: string; drop: () => Promise<void> };

  beforeAll(async () => {
    limitedDatabase = await createTestDatabase();
    // Registration's HTTP login takes 2 from the same bucket (challenge and token).
    limited = await startRelay(limitedDatabase.url, { RATE_LIMIT_LOGIN: '4/600' });
  });
  afterAll(async () => {
    await limited?.close();
    await limitedDatabase?.drop();
  });

  it('counts a login by signature in the per-address login bucket, closing with 4429 past it', async () => {
    const alice = await TestDevice.register(limited.url);
    for (let login = 0; login < 2; login++) {
      const socket = await TestSocket.connect(limited.wsUrl, alice, 200, { login: true });
      await socket.close();
    }
    const { socket, nonce } = await challenged(limited);
    const answer = await socket.request('auth', alice.socketLogin(nonce));
    expect(answer.status).toBe(CLOSE_CODES.SLOW_CONSUMER);
    // The HTTP login shares the bucket.
    const challenge = await http(limited.url, 'POST', '/v1/auth/challenge', {
      accountId: alice.accountId,
      deviceId: alice.deviceId,
    });
    expect(challenge.status).toBe(429);
  });
});
