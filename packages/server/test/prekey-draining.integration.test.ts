import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, kemPreKeys, preKeys, type HttpResult } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Prekey draining: throwaway accounts fetching a victim's bundles to use up its one-time keys.
 * Requests come from chosen loopback addresses (127.0.0.x), so that the per-address and
 * per-account buckets can be told apart.
 */

let databaseUrl: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
});
afterAll(async () => {
  await drop?.();
});

/** GET with a device's token, from a chosen local address. */
const getFrom = (device: TestDevice, path: string, from: string): Promise<HttpResult> =>
  new Promise((resolve, reject) => {
    const target = new URL(device.baseUrl);
    const sent = request(
      {
        host: target.hostname,
        port: target.port,
        path,
        localAddress: from,
        agent: false,
        headers: { authorization: `Bearer ${device.token}` },
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const headers = new Headers();
          for (const [name, value] of Object.entries(answer.headers)) {
            if (typeof value === 'string') headers.set(name, value);
          }
          resolve({ status: answer.statusCode ?? 0, body: JSON.parse(text), headers });
        });
      },
    );
    sent.on('error', reject);
    sent.end();
  });

const victimWithKeys = async (relay: TestRelay): Promise<TestDevice> => {
  const victim = await TestDevice.register(relay.url);
  const uploaded = await victim.request('PUT', '/v1/keys', {
    preKeys: preKeys(1, 100),
    kyberPreKeys: kemPreKeys(1, 100),
  });
  expect(uploaded.status).toBe(204);
  return victim;
};

const counts = async (victim: TestDevice) =>
  (await victim.request('GET', '/v1/keys/count')).body as { preKeys: number; kyberPreKeys: number };

const expectRateLimited = (reply: HttpResult): void => {
  expect(reply.status).toBe(429);
  expect(reply.body.error.code).toBe('RATE_LIMITED');
  expect(Number(reply.headers.get('retry-after'))).toBeGreaterThan(0);
};

describe('many throwaway accounts against one victim, with the default prekey limits', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startRelay(databaseUrl, {
      RATE_LIMIT_PREKEY_FETCH: '6/600',
      RATE_LIMIT_PREKEY_REQUESTER: '200/18',
      RATE_LIMIT_PREKEY_TARGET: '10/360',
    });
  });
  afterAll(async () => {
    await relay?.close();
  });

  it('50 accounts from one address meet 429 and take at most 10 one-time keys; bundles stay usable', async () => {
    const victim = await victimWithKeys(relay);
    const attackers = await Promise.all(
      Array.from({ length: 50 }, () => TestDevice.register(relay.url)),
    );
    const replies: HttpResult[] = [];
    // Each as often as its own per-pair bucket allows: 300 fetches, from one address.
    await Promise.all(
      attackers.map(async (attacker) => {
        for (let i = 0; i < 6; i += 1) {
          replies.push(await getFrom(attacker, `/v1/keys/${victim.accountId}/1`, '127.0.0.2'));
        }
      }),
    );
    const served = replies.filter((reply) => reply.status === 200);
    const refused = replies.filter((reply) => reply.status !== 200);
    // The address's bucket (200) refuses the rest.
    expect(served).toHaveLength(200);
    expect(refused).toHaveLength(100);
    for (const reply of refused) expectRateLimited(reply);
    // The target's budget: 10 bundles carried one-time keys; the victim keeps 90 of 100.
    const withOneTime = served.filter((reply) => reply.body.devices[0].preKey !== undefined);
    expect(withOneTime).toHaveLength(10);
    expect(await counts(victim)).toEqual({ preKeys: 90, kyberPreKeys: 90 });
    // Every other bundle is still usable: signed prekey and the last-resort Kyber key.
    for (const reply of served.filter((r) => r.body.devices[0].preKey === undefined)) {
      expect(reply.body.devices[0].kyberPreKeyIsLastResort).toBe(true);
      expect(reply.body.devices[0].signedPreKey.publicKey).toBeTruthy();
    }
    // Another requester, from another address, is not refused: it gets a last-resort bundle.
    const neighbour = await TestDevice.register(relay.url);
    const later = await getFrom(neighbour, `/v1/keys/${victim.accountId}/1`, '127.0.0.3');
    expect(later.status).toBe(200);
    expect(later.body.devices[0].kyberPreKeyIsLastResort).toBe(true);
  }, 120_000);
});

describe('one account spread over many addresses and targets', () => {
  it('meets 429 once it fetched its own budget of bundles, from any of its devices', async () => {
    const relay = await startRelay(databaseUrl, { RATE_LIMIT_PREKEY_REQUESTER: '20/3600' });
    try {
      const requester = await TestDevice.register(relay.url);
      const targets = await Promise.all(Array.from({ length: 25 }, () => victimWithKeys(relay)));
      const statuses: number[] = [];
      let refusal: HttpResult | undefined;
      for (const [i, target] of targets.entries()) {
        // A new address for every fetch: no address bucket comes near its limit.
        const reply = await getFrom(
          requester,
          `/v1/keys/${target.accountId}/1`,
          `127.0.1.${i + 1}`,
        );
        statuses.push(reply.status);
        if (reply.status !== 200) refusal ??= reply;
      }
      expect(statuses.filter((status) => status === 200)).toHaveLength(20);
      expectRateLimited(refusal!);
      // The account's other device shares the bucket; another account has its own.
      const linked = await TestDevice.link(requester);
      expectRateLimited(await getFrom(linked, `/v1/keys/${targets[0]!.accountId}/1`, '127.0.2.1'));
      const other = await TestDevice.register(relay.url);
      expect(
        (await getFrom(other, `/v1/keys/${targets[0]!.accountId}/1`, '127.0.2.2')).status,
      ).toBe(200);
    } finally {
      await relay.close();
    }
  }, 120_000);
});
