import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES, MAX_DEVICES_PER_ACCOUNT } from '@privcomm/wire';
import { createInvitesRepository } from '../src/repositories/accounts.ts';
import { createTestDatabase } from './support/database.ts';
import { http, kemPreKeys, preKeys, TestDevice, TestSocket } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

let relay: TestRelay;
let databaseUrl: string;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Runs `body` against an extra relay on the same database, closing it afterwards. */
const withRelay = async (
  env: Record<string, string>,
  body: (extra: TestRelay) => Promise<void>,
) => {
  const extra = await startRelay(databaseUrl, env);
  try {
    await body(extra);
  } finally {
    await extra.close();
  }
};

/** Resolves with the close code, or rejects if the socket is still open after `ms`. */
const closedWithin = (socket: TestSocket, ms: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    void socket.closed.then((code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });

const countQueued = (device: TestDevice) =>
  relay.relay.context.envelopes.countFor(device.accountId, device.deviceId);

/** Rows referring to the account in every table that holds account data. */
const rowsOf = async (accountId: string): Promise<Record<string, number>> => {
  const counts: Record<string, number> = {};
  for (const [table, column] of [
    ['accounts', 'id'],
    ['devices', 'account_id'],
    ['one_time_prekeys', 'account_id'],
    ['one_time_kem_prekeys', 'account_id'],
    ['envelopes', 'account_id'],
    ['link_tokens', 'account_id'],
  ] as const) {
    const result = await relay.relay.context.database.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${table} WHERE ${column} = $1`,
      [accountId],
    );
    counts[table] = result.rows[0]?.n ?? -1;
  }
  return counts;
};

/** A link token from `primary`, checked to be issued. */
const linkToken = async (primary: TestDevice): Promise<string> => {
  const result = await primary.request('POST', '/v1/devices/link-tokens');
  expect(result.status).toBe(200);
  return result.body.linkToken as string;
};

const linkWith = (baseUrl: string, token: string, device = new TestDevice(baseUrl)) =>
  http(baseUrl, 'POST', '/v1/devices', { linkToken: token, ...device.newDeviceFields() });

describe('registration', () => {
  it('creates the account with its primary device and both non-consumable keys', async () => {
    const device = new TestDevice(relay.url);
    const body = device.registrationBody();
    const created = await http(relay.url, 'POST', '/v1/accounts', body);
    expect(created.status).toBe(200);
    expect(created.body.accountId).toMatch(UUID);
    expect(created.body.deviceId).toBe(1);
    device.accountId = created.body.accountId;
    device.deviceId = created.body.deviceId;
    await device.authenticate();

    const other = await TestDevice.register(relay.url);
    const bundle = await other.request('GET', `/v1/keys/${device.accountId}/1`);
    expect(bundle.status).toBe(200);
    expect(bundle.body).toEqual({
      identityKey: body.identityKey,
      devices: [
        {
          deviceId: 1,
          registrationId: body.registrationId,
          signedPreKey: body.signedPreKey,
          kyberPreKey: body.kyberLastResortPreKey,
          kyberPreKeyIsLastResort: true,
        },
      ],
    });
    const listed = await device.request('GET', '/v1/devices');
    expect(listed.body.devices).toHaveLength(1);
    expect(listed.body.devices[0]).toMatchObject({
      deviceId: 1,
      registrationId: body.registrationId,
    });
  });

  it('refuses a body that does not match the schema, and creates nothing', async () => {
    const before = await relay.relay.context.database.pool.query(
      'SELECT count(*)::int AS n FROM accounts',
    );
    const device = new TestDevice(relay.url);
    const bad = await http(
      relay.url,
      'POST',
      '/v1/accounts',
      device.registrationBody({ identityKey: 'AAAA' }),
    );
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_FAILED');
    const after = await relay.relay.context.database.pool.query(
      'SELECT count(*)::int AS n FROM accounts',
    );
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('by invitation: requires a valid, unexpired, unspent code', async () => {
    await withRelay({ REGISTRATION: 'invite' }, async (invited) => {
      const invites = createInvitesRepository(invited.relay.context.database.db);
      const register = (inviteCode?: string, extra: Record<string, unknown> = {}) =>
        http(invited.url, 'POST', '/v1/accounts', {
          ...new TestDevice(invited.url).registrationBody(),
          ...(inviteCode === undefined ? {} : { inviteCode }),
          ...extra,
        });

      const missing = await register();
      expect(missing.status).toBe(403);
      expect(missing.body.error.code).toBe('INVITE_REQUIRED');

      const unknown = await register('no-such-code-1234');
      expect(unknown.status).toBe(403);
      expect(unknown.body.error.code).toBe('INVITE_INVALID');

      await invites.create('multi-use-code-0001', 2, new Date(Date.now() + 3_600_000));
      const first = await register('multi-use-code-0001');
      expect(first.status).toBe(200);
      expect(first.body.accountId).toMatch(UUID);
      expect((await register('multi-use-code-0001')).status).toBe(200);
      const spent = await register('multi-use-code-0001');
      expect(spent.status).toBe(403);
      expect(spent.body.error.code).toBe('INVITE_INVALID');

      await invites.create('single-use-code-0001', 1, null);
      // A registration refused by validation does not take the code's only use.
      const invalid = await register('single-use-code-0001', { registrationId: 0 });
      expect(invalid.status).toBe(400);
      expect((await register('single-use-code-0001')).status).toBe(200);
      const again = await register('single-use-code-0001');
      expect(again.status).toBe(403);
      expect(again.body.error.code).toBe('INVITE_INVALID');

      await invites.create('expired-code-00001', 5, new Date(Date.now() - 1_000));
      const expired = await register('expired-code-00001');
      expect(expired.status).toBe(403);
      expect(expired.body.error.code).toBe('INVITE_INVALID');
    });
  });

  it('an open relay ignores invite codes', async () => {
    const device = new TestDevice(relay.url);
    const created = await http(
      relay.url,
      'POST',
      '/v1/accounts',
      device.registrationBody({ inviteCode: 'whatever-code-1234' }),
    );
    expect(created.status).toBe(200);
  });

  it('is rate-limited per client address with Retry-After', async () => {
    await withRelay({ RATE_LIMIT_REGISTRATION: '2/600' }, async (limited) => {
      const register = () =>
        http(limited.url, 'POST', '/v1/accounts', new TestDevice(limited.url).registrationBody());
      expect((await register()).status).toBe(200);
      expect((await register()).status).toBe(200);
      const third = await register();
      expect(third.status).toBe(429);
      expect(third.body.error.code).toBe('RATE_LIMITED');
      const retryAfter = Number(third.headers.get('retry-after'));
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(600);
      expect(third.body.retryAfterSeconds).toBe(retryAfter);
    });
  });
});

describe('linking devices', () => {
  it('only the primary creates link tokens; each links one device with the next id', async () => {
    const primary = await TestDevice.register(relay.url);
    const token = await linkToken(primary);
    const second = new TestDevice(relay.url);
    const linked = await linkWith(relay.url, token, second);
    expect(linked.status).toBe(200);
    expect(linked.body).toEqual({ accountId: primary.accountId, deviceId: 2 });
    second.accountId = linked.body.accountId;
    second.deviceId = linked.body.deviceId;
    await second.authenticate();

    const refused = await second.request('POST', '/v1/devices/link-tokens');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('FORBIDDEN');

    const used = await linkWith(relay.url, token);
    expect(used.status).toBe(403);
    expect(used.body.error.code).toBe('LINK_TOKEN_INVALID');
    const unknown = await linkWith(relay.url, 'A'.repeat(32));
    expect(unknown.status).toBe(403);
    expect(unknown.body.error.code).toBe('LINK_TOKEN_INVALID');

    const third = await TestDevice.link(primary);
    expect(third.deviceId).toBe(3);
    expect(third.accountId).toBe(primary.accountId);
    const unauthenticated = await http(relay.url, 'POST', '/v1/devices/link-tokens');
    expect(unauthenticated.status).toBe(401);
  });

  it('refuses a seventh device, keeps the refused token usable, and never reuses ids', async () => {
    const primary = await TestDevice.register(relay.url);
    const linked: TestDevice[] = [];
    for (let i = 1; i < MAX_DEVICES_PER_ACCOUNT; i += 1)
      linked.push(await TestDevice.link(primary));
    expect(linked.map((d) => d.deviceId)).toEqual([2, 3, 4, 5, 6]);

    const token = await linkToken(primary);
    const full = await linkWith(relay.url, token);
    expect(full.status).toBe(409);
    expect(full.body.error.code).toBe('DEVICE_LIMIT_REACHED');

    expect((await primary.request('DELETE', '/v1/devices/3')).status).toBe(204);
    const retried = await linkWith(relay.url, token);
    expect(retried.status).toBe(200);
    expect(retried.body.deviceId).toBe(7);

    expect((await primary.request('DELETE', '/v1/devices/7')).status).toBe(204);
    const next = await TestDevice.link(primary);
    expect(next.deviceId).toBe(8);
    const listed = await primary.request('GET', '/v1/devices');
    expect(listed.body.devices.map((d: { deviceId: number }) => d.deviceId)).toEqual([
      1, 2, 4, 5, 6, 8,
    ]);
  });

  it('lists devices with day-granular dates only', async () => {
    const primary = await TestDevice.register(relay.url);
    const second = await TestDevice.link(primary);
    for (const device of [primary, second]) {
      const listed = await device.request('GET', '/v1/devices');
      expect(listed.status).toBe(200);
      expect(listed.body.devices).toHaveLength(2);
      for (const [i, info] of (listed.body.devices as Record<string, unknown>[]).entries()) {
        expect(Object.keys(info).sort()).toEqual([
          'createdOn',
          'deviceId',
          'lastSeenOn',
          'registrationId',
        ]);
        expect(info.deviceId).toBe(i + 1);
        expect(info.registrationId).toBe([primary, second][i]!.registrationId);
        expect(info.createdOn).toMatch(DAY);
        expect(info.lastSeenOn).toMatch(DAY);
      }
    }
    expect((await http(relay.url, 'GET', '/v1/devices')).status).toBe(401);
  });
});

describe('removing devices', () => {
  it('the primary removes a linked device: keys, envelopes, socket and tokens go', async () => {
    const primary = await TestDevice.register(relay.url);
    const second = await TestDevice.link(primary);
    const sender = await TestDevice.register(relay.url);
    const upload = await second.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, 5),
      kyberPreKeys: kemPreKeys(1, 5),
    });
    expect(upload.status).toBe(204);
    for (const text of ['a', 'b']) {
      const sent = await sender.send(
        primary.accountId,
        [primary.address(), second.address()],
        text,
      );
      expect(sent.status).toBe(200);
    }
    expect(await countQueued(second)).toBe(2);
    // Receives the envelopes but never acknowledges them, so they stay queued until removal.
    const socket = await TestSocket.connect(relay.wsUrl, second, null);
    await socket.until(() => socket.envelopes().length === 2, 5_000, 'two envelopes');

    const removed = await primary.request('DELETE', `/v1/devices/${second.deviceId}`);
    expect(removed.status).toBe(204);
    expect(await closedWithin(socket, 2_000)).toBe(CLOSE_CODES.UNAUTHENTICATED);
    expect(await countQueued(second)).toBe(0);
    expect(await countQueued(primary)).toBe(2);
    const keys = await relay.relay.context.database.pool.query(
      `SELECT (SELECT count(*)::int FROM one_time_prekeys WHERE account_id = $1 AND device_id = 2)
            + (SELECT count(*)::int FROM one_time_kem_prekeys WHERE account_id = $1 AND device_id = 2) AS n`,
      [primary.accountId],
    );
    expect(keys.rows[0].n).toBe(0);
    expect((await second.request('GET', '/v1/keys/count')).status).toBe(401);
    const bundle = await sender.request('GET', `/v1/keys/${primary.accountId}/2`);
    expect(bundle.status).toBe(404);
    expect(bundle.body.error.code).toBe('DEVICE_NOT_FOUND');
    const listed = await primary.request('GET', '/v1/devices');
    expect(listed.body.devices.map((d: { deviceId: number }) => d.deviceId)).toEqual([1]);
  });

  it('a linked device removes itself, but not another, and nobody removes device 1', async () => {
    const primary = await TestDevice.register(relay.url);
    const second = await TestDevice.link(primary);
    const third = await TestDevice.link(primary);

    const other = await second.request('DELETE', `/v1/devices/${third.deviceId}`);
    expect(other.status).toBe(403);
    expect(other.body.error.code).toBe('FORBIDDEN');
    const ofPrimary = await second.request('DELETE', '/v1/devices/1');
    expect(ofPrimary.status).toBe(403);
    const self = await primary.request('DELETE', '/v1/devices/1');
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('FORBIDDEN');

    expect((await second.request('DELETE', `/v1/devices/${second.deviceId}`)).status).toBe(204);
    expect((await second.request('GET', '/v1/devices')).status).toBe(401);
    const listed = await primary.request('GET', '/v1/devices');
    expect(listed.body.devices.map((d: { deviceId: number }) => d.deviceId)).toEqual([1, 3]);

    const unknown = await primary.request('DELETE', '/v1/devices/2');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('DEVICE_NOT_FOUND');
    const never = await primary.request('DELETE', '/v1/devices/99');
    expect(never.status).toBe(404);
    expect(never.body.error.code).toBe('DEVICE_NOT_FOUND');
  });

  it('cannot remove a device of another account', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    await TestDevice.link(bob);
    const result = await alice.request('DELETE', '/v1/devices/2');
    expect(result.status).toBe(404);
    const listed = await bob.request('GET', '/v1/devices');
    expect(listed.body.devices).toHaveLength(2);
  });

  it('refuses non-canonical device ids with 400', async () => {
    const primary = await TestDevice.register(relay.url);
    await TestDevice.link(primary);
    for (const id of ['01', '0', '1e0', '-1', 'abc', '02', '+2', '2.0', '128', '1000']) {
      const result = await primary.request('DELETE', `/v1/devices/${id}`);
      expect(result.status, id).toBe(400);
      expect(result.body.error.code, id).toBe('VALIDATION_FAILED');
    }
    const listed = await primary.request('GET', '/v1/devices');
    expect(listed.body.devices).toHaveLength(2);
  });

  it('requires authentication', async () => {
    const result = await http(relay.url, 'DELETE', '/v1/devices/2');
    expect(result.status).toBe(401);
    expect(result.body.error.code).toBe('UNAUTHENTICATED');
  });
});

describe('deleting the account', () => {
  it('a linked device may not delete the account', async () => {
    const primary = await TestDevice.register(relay.url);
    const second = await TestDevice.link(primary);
    const refused = await second.request('DELETE', '/v1/accounts/me');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('FORBIDDEN');
    expect((await rowsOf(primary.accountId)).devices).toBe(2);
    expect((await http(relay.url, 'DELETE', '/v1/accounts/me')).status).toBe(401);
  });

  it('the primary deletes everything: sockets close, tokens die, rows go', async () => {
    const primary = await TestDevice.register(relay.url);
    const second = await TestDevice.link(primary);
    const sender = await TestDevice.register(relay.url);
    for (const device of [primary, second]) {
      const upload = await device.request('PUT', '/v1/keys', {
        preKeys: preKeys(1, 3),
        kyberPreKeys: kemPreKeys(1, 3),
      });
      expect(upload.status).toBe(204);
    }
    const sent = await sender.send(primary.accountId, [primary.address(), second.address()], 'bye');
    expect(sent.status).toBe(200);
    await linkToken(primary);
    const before = await rowsOf(primary.accountId);
    expect(before).toMatchObject({
      accounts: 1,
      devices: 2,
      one_time_prekeys: 6,
      one_time_kem_prekeys: 6,
      envelopes: 2,
      link_tokens: 1,
    });

    const sockets = [
      await TestSocket.connect(relay.wsUrl, primary, null),
      await TestSocket.connect(relay.wsUrl, second, null),
    ];
    const deleted = await primary.request('DELETE', '/v1/accounts/me');
    expect(deleted.status).toBe(204);
    for (const socket of sockets) {
      expect(await closedWithin(socket, 2_000)).toBe(CLOSE_CODES.UNAUTHENTICATED);
    }
    for (const device of [primary, second]) {
      const result = await device.request('GET', '/v1/devices');
      expect(result.status).toBe(401);
      expect(result.body.error.code).toBe('UNAUTHENTICATED');
    }
    expect((await primary.request('DELETE', '/v1/accounts/me')).status).toBe(401);
    expect(await rowsOf(primary.accountId)).toEqual({
      accounts: 0,
      devices: 0,
      one_time_prekeys: 0,
      one_time_kem_prekeys: 0,
      envelopes: 0,
      link_tokens: 0,
    });
    const bundle = await sender.request('GET', `/v1/keys/${primary.accountId}/*`);
    expect(bundle.status).toBe(404);
    expect(bundle.body.error.code).toBe('ACCOUNT_NOT_FOUND');
    // The sender's own account is untouched.
    expect((await sender.request('GET', '/v1/devices')).status).toBe(200);
  });
});
