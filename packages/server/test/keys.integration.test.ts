import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_KEYS_PER_UPLOAD, type DeviceBundle } from '@privcomm/wire';
import { createTestDatabase } from './support/database.ts';
import {
  http,
  kemPreKey,
  kemPreKeys,
  preKeys,
  signedPreKey,
  TestDevice,
} from './support/client.ts';
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

const counts = async (device: TestDevice) => {
  const result = await device.request('GET', '/v1/keys/count');
  expect(result.status).toBe(200);
  return result.body as { preKeys: number; kyberPreKeys: number };
};

/** One device's bundle, fetched by `requester`. */
const fetchBundle = async (requester: TestDevice, target: TestDevice): Promise<DeviceBundle> => {
  const result = await requester.request('GET', `/v1/keys/${target.accountId}/${target.deviceId}`);
  expect(result.status).toBe(200);
  expect(result.body.devices).toHaveLength(1);
  return result.body.devices[0] as DeviceBundle;
};

describe('uploading keys', () => {
  it('stores one-time keys and counts them', async () => {
    const device = await TestDevice.register(relay.url);
    expect(await counts(device)).toEqual({ preKeys: 0, kyberPreKeys: 0 });
    const upload = await device.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, 5),
      kyberPreKeys: kemPreKeys(1, 4),
    });
    expect(upload.status).toBe(204);
    expect(await counts(device)).toEqual({ preKeys: 5, kyberPreKeys: 4 });
  });

  it('a non-empty list replaces its kind; an empty or absent list changes nothing', async () => {
    const device = await TestDevice.register(relay.url);
    const requester = await TestDevice.register(relay.url);
    await device.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, 5),
      kyberPreKeys: kemPreKeys(1, 4),
    });

    const replacement = preKeys(100, 3);
    expect((await device.request('PUT', '/v1/keys', { preKeys: replacement })).status).toBe(204);
    expect(await counts(device)).toEqual({ preKeys: 3, kyberPreKeys: 4 });

    expect(
      (await device.request('PUT', '/v1/keys', { preKeys: [], kyberPreKeys: [] })).status,
    ).toBe(204);
    expect(await counts(device)).toEqual({ preKeys: 3, kyberPreKeys: 4 });
    expect((await device.request('PUT', '/v1/keys', {})).status).toBe(204);
    expect(await counts(device)).toEqual({ preKeys: 3, kyberPreKeys: 4 });

    const kyberReplacement = kemPreKeys(500, 2);
    expect(
      (await device.request('PUT', '/v1/keys', { kyberPreKeys: kyberReplacement })).status,
    ).toBe(204);
    expect(await counts(device)).toEqual({ preKeys: 3, kyberPreKeys: 2 });

    // Only the replacement keys are handed out, in key id order.
    const taken = [];
    for (let i = 0; i < 3; i += 1) taken.push(await fetchBundle(requester, device));
    expect(taken.map((b) => b.preKey)).toEqual(replacement);
    expect(taken.map((b) => b.kyberPreKey)).toEqual([...kyberReplacement, taken[2]!.kyberPreKey]);
    expect(taken.map((b) => b.kyberPreKeyIsLastResort)).toEqual([false, false, true]);
  });

  it('refuses more than 100 keys in one list, and stores nothing', async () => {
    const device = await TestDevice.register(relay.url);
    await device.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, 2),
      kyberPreKeys: kemPreKeys(1, 2),
    });
    const atLimit = await device.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, MAX_KEYS_PER_UPLOAD),
    });
    expect(atLimit.status).toBe(204);
    expect(await counts(device)).toEqual({ preKeys: 100, kyberPreKeys: 2 });

    for (const body of [
      { preKeys: preKeys(1000, MAX_KEYS_PER_UPLOAD + 1) },
      { kyberPreKeys: kemPreKeys(1000, MAX_KEYS_PER_UPLOAD + 1) },
      { preKeys: preKeys(2000, 5), kyberPreKeys: kemPreKeys(1000, MAX_KEYS_PER_UPLOAD + 1) },
    ]) {
      const result = await device.request('PUT', '/v1/keys', body);
      expect(result.status).toBe(400);
      expect(result.body.error.code).toBe('VALIDATION_FAILED');
    }
    expect(await counts(device)).toEqual({ preKeys: 100, kyberPreKeys: 2 });
  });

  it('refuses duplicate key ids within a list, and stores nothing', async () => {
    const device = await TestDevice.register(relay.url);
    await device.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, 2),
      kyberPreKeys: kemPreKeys(1, 2),
    });
    const ec = [...preKeys(10, 3), ...preKeys(11, 1)];
    const kem = [...kemPreKeys(10, 3), kemPreKey(12)];
    for (const body of [
      { preKeys: ec },
      { kyberPreKeys: kem },
      { preKeys: preKeys(20, 3), kyberPreKeys: kem },
    ]) {
      const result = await device.request('PUT', '/v1/keys', body);
      expect(result.status).toBe(400);
      expect(result.body.error.code).toBe('VALIDATION_FAILED');
    }
    expect(await counts(device)).toEqual({ preKeys: 2, kyberPreKeys: 2 });
    // The same id in the EC list and the Kyber list is fine: they are separate id spaces.
    const separate = await device.request('PUT', '/v1/keys', {
      preKeys: preKeys(30, 2),
      kyberPreKeys: kemPreKeys(30, 2),
    });
    expect(separate.status).toBe(204);
  });

  it('refuses malformed keys and unauthenticated uploads', async () => {
    const device = await TestDevice.register(relay.url);
    const badKey = await device.request('PUT', '/v1/keys', {
      preKeys: [{ keyId: 1, publicKey: 'AAAA' }],
    });
    expect(badKey.status).toBe(400);
    const extraField = await device.request('PUT', '/v1/keys', { preKeys: [], other: 1 });
    expect(extraField.status).toBe(400);
    const anonymous = await http(relay.url, 'PUT', '/v1/keys', { preKeys: preKeys(1, 1) });
    expect(anonymous.status).toBe(401);
    expect(await counts(device)).toEqual({ preKeys: 0, kyberPreKeys: 0 });
  });

  it('replaces the signed prekey and the last-resort Kyber key in the next bundle', async () => {
    const device = await TestDevice.register(relay.url);
    const requester = await TestDevice.register(relay.url);
    const before = await fetchBundle(requester, device);
    const signed = signedPreKey(7);
    const lastResort = kemPreKey(2000);
    const upload = await device.request('PUT', '/v1/keys', {
      signedPreKey: signed,
      kyberLastResortPreKey: lastResort,
    });
    expect(upload.status).toBe(204);
    const after = await fetchBundle(requester, device);
    expect(after.signedPreKey).toEqual(signed);
    expect(after.signedPreKey).not.toEqual(before.signedPreKey);
    expect(after.kyberPreKey).toEqual(lastResort);
    expect(after.kyberPreKeyIsLastResort).toBe(true);
    expect(after.registrationId).toBe(device.registrationId);
  });
});

describe('fetching bundles', () => {
  it('consumes one EC and one Kyber one-time key per fetch, atomically under concurrency', async () => {
    const target = await TestDevice.register(relay.url);
    const ec = preKeys(1, 10);
    const kem = kemPreKeys(1, 10);
    await target.request('PUT', '/v1/keys', { preKeys: ec, kyberPreKeys: kem });
    const requesters = await Promise.all(
      Array.from({ length: 10 }, () => TestDevice.register(relay.url)),
    );

    const bundles = await Promise.all(
      requesters.map((requester) => fetchBundle(requester, target)),
    );
    const ecIds = bundles.map((b) => b.preKey?.keyId);
    const kemIds = bundles.map((b) => b.kyberPreKey.keyId);
    expect(new Set(ecIds).size).toBe(10);
    expect(new Set(kemIds).size).toBe(10);
    expect([...ecIds].sort((a, b) => a! - b!)).toEqual(ec.map((k) => k.keyId));
    expect([...kemIds].sort((a, b) => a - b)).toEqual(kem.map((k) => k.keyId));
    for (const bundle of bundles) {
      expect(bundle.kyberPreKeyIsLastResort).toBe(false);
      expect(bundle.preKey).toEqual(ec.find((k) => k.keyId === bundle.preKey?.keyId));
      expect(bundle.kyberPreKey).toEqual(kem.find((k) => k.keyId === bundle.kyberPreKey.keyId));
    }
    expect(await counts(target)).toEqual({ preKeys: 0, kyberPreKeys: 0 });
  });

  it('omits preKey when EC keys run out, and falls back to the last-resort Kyber key, repeatedly', async () => {
    const target = new TestDevice(relay.url);
    const body = target.registrationBody();
    const created = await http(relay.url, 'POST', '/v1/accounts', body);
    target.accountId = created.body.accountId;
    target.deviceId = created.body.deviceId;
    await target.authenticate();
    const requester = await TestDevice.register(relay.url);
    await target.request('PUT', '/v1/keys', {
      preKeys: preKeys(1, 1),
      kyberPreKeys: kemPreKeys(1, 2),
    });

    const first = await fetchBundle(requester, target);
    expect(first.preKey?.keyId).toBe(1);
    expect(first.kyberPreKey.keyId).toBe(1);
    expect(first.kyberPreKeyIsLastResort).toBe(false);

    const second = await fetchBundle(requester, target);
    expect(second).not.toHaveProperty('preKey');
    expect(second.kyberPreKey.keyId).toBe(2);
    expect(second.kyberPreKeyIsLastResort).toBe(false);

    for (let i = 0; i < 3; i += 1) {
      const exhausted = await fetchBundle(requester, target);
      expect(exhausted).not.toHaveProperty('preKey');
      expect(exhausted.kyberPreKey).toEqual(body.kyberLastResortPreKey);
      expect(exhausted.kyberPreKeyIsLastResort).toBe(true);
      expect(exhausted.signedPreKey).toEqual(body.signedPreKey);
    }
    expect(await counts(target)).toEqual({ preKeys: 0, kyberPreKeys: 0 });
    const stored = await relay.relay.context.database.pool.query(
      'SELECT kem_last_resort_key_id FROM devices WHERE account_id = $1 AND device_id = 1',
      [target.accountId],
    );
    expect(stored.rows).toEqual([{ kem_last_resort_key_id: body.kyberLastResortPreKey.keyId }]);
  });

  it('* returns a bundle for every device of the account, each taking its own keys', async () => {
    const primary = await TestDevice.register(relay.url);
    const second = await TestDevice.link(primary);
    const requester = await TestDevice.register(relay.url);
    await primary.request('PUT', '/v1/keys', {
      preKeys: preKeys(10, 2),
      kyberPreKeys: kemPreKeys(10, 2),
    });
    await second.request('PUT', '/v1/keys', { preKeys: preKeys(20, 2) });

    const all = await requester.request('GET', `/v1/keys/${primary.accountId}/*`);
    expect(all.status).toBe(200);
    const devices = all.body.devices as DeviceBundle[];
    expect(devices.map((d) => d.deviceId)).toEqual([1, 2]);
    expect(devices.map((d) => d.registrationId)).toEqual([
      primary.registrationId,
      second.registrationId,
    ]);
    expect(devices.map((d) => d.preKey?.keyId)).toEqual([10, 20]);
    expect(devices.map((d) => d.kyberPreKeyIsLastResort)).toEqual([false, true]);
    expect(devices[0]?.kyberPreKey.keyId).toBe(10);
    expect(await counts(primary)).toEqual({ preKeys: 1, kyberPreKeys: 1 });
    expect(await counts(second)).toEqual({ preKeys: 1, kyberPreKeys: 0 });
    expect(typeof all.body.identityKey).toBe('string');
  });

  it('answers 404 for unknown accounts and devices, 400 for bad parameters, 401 without a token', async () => {
    const target = await TestDevice.register(relay.url);
    const requester = await TestDevice.register(relay.url);

    const noAccount = await requester.request(
      'GET',
      '/v1/keys/00000000-0000-4000-8000-000000000000/1',
    );
    expect(noAccount.status).toBe(404);
    expect(noAccount.body.error.code).toBe('ACCOUNT_NOT_FOUND');
    const noAccountAll = await requester.request(
      'GET',
      '/v1/keys/00000000-0000-4000-8000-000000000000/*',
    );
    expect(noAccountAll.status).toBe(404);
    expect(noAccountAll.body.error.code).toBe('ACCOUNT_NOT_FOUND');

    const noDevice = await requester.request('GET', `/v1/keys/${target.accountId}/2`);
    expect(noDevice.status).toBe(404);
    expect(noDevice.body.error.code).toBe('DEVICE_NOT_FOUND');

    const badPaths = [
      `/v1/keys/${target.accountId.toUpperCase()}/1`,
      `/v1/keys/not-a-uuid/1`,
      `/v1/keys/${target.accountId.replaceAll('-', '')}/1`,
      ...['0', '01', '1e0', '-1', 'abc', '128', '1000', '**'].map(
        (id) => `/v1/keys/${target.accountId}/${encodeURIComponent(id)}`,
      ),
    ];
    for (const path of badPaths) {
      const result = await requester.request('GET', path);
      expect(result.status, path).toBe(400);
      expect(result.body.error.code, path).toBe('VALIDATION_FAILED');
    }

    const anonymous = await http(relay.url, 'GET', `/v1/keys/${target.accountId}/1`);
    expect(anonymous.status).toBe(401);
  });

  it('is rate-limited per requester and target; a refused fetch consumes nothing', async () => {
    const limited = await startRelay(databaseUrl, { RATE_LIMIT_PREKEY_FETCH: '2/600' });
    try {
      const target = await TestDevice.register(limited.url);
      const elsewhere = await TestDevice.register(limited.url);
      const requester = await TestDevice.register(limited.url);
      const bystander = await TestDevice.register(limited.url);
      await target.request('PUT', '/v1/keys', {
        preKeys: preKeys(1, 10),
        kyberPreKeys: kemPreKeys(1, 10),
      });

      const path = `/v1/keys/${target.accountId}/1`;
      expect((await requester.request('GET', path)).status).toBe(200);
      expect((await requester.request('GET', path)).status).toBe(200);
      const refused = await requester.request('GET', path);
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe('RATE_LIMITED');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await requester.request('GET', `/v1/keys/${target.accountId}/*`)).status).toBe(429);
      expect(await counts(target)).toEqual({ preKeys: 8, kyberPreKeys: 8 });

      expect((await bystander.request('GET', path)).status).toBe(200);
      expect((await requester.request('GET', `/v1/keys/${elsewhere.accountId}/1`)).status).toBe(
        200,
      );
      expect(await counts(target)).toEqual({ preKeys: 7, kyberPreKeys: 7 });
    } finally {
      await limited.close();
    }
  });
});
