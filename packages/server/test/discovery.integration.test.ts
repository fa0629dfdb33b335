import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  formatDiscoveryKey,
  newDiscoveryKey,
  readDiscoveryKeyFiles,
  rotateDiscoveryKeyFiles,
} from '../src/discovery/keys.ts';
import { createTestDatabase } from './support/database.ts';
import { http, TestDevice } from './support/client.ts';
import { runServerScript, startRelay, type TestRelay } from './support/relay.ts';

/**
 * Discovery through the relay's HTTP API, with the real OPRF on the client side (noble's, as the
 * client core uses): publish, look up, quotas, batch cap, key rotation with its grace period.
 */

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
const oprf = ristretto255_oprf.oprf;

let databaseUrl: string;
let drop: () => Promise<void>;
const relays: TestRelay[] = [];

beforeAll(async () => {
  ({ url: databaseUrl, drop } = await createTestDatabase());
});
afterAll(async () => {
  for (const relay of relays) await relay.close();
  await drop?.();
});

const relayWith = async (env: Record<string, string> = {}): Promise<TestRelay> => {
  const relay = await startRelay(databaseUrl, env);
  relays.push(relay);
  return relay;
};

const registered = async (relay: TestRelay): Promise<TestDevice> => {
  const device = await TestDevice.register(relay.url);
  await device.authenticate();
  return device;
};

/** Tokens of `numbers` under every key the relay evaluates with, by key version. */
const tokensOf = async (device: TestDevice, numbers: string[]) => {
  const inputs = numbers.map((number) => new TextEncoder().encode(number));
  const blinds = inputs.map((input) => oprf.blind(input));
  const response = await http(
    device.baseUrl,
    'POST',
    '/v1/discovery/evaluate',
    { blinded: blinds.map((blind) => b64(blind.blinded)) },
    device.token,
  );
  expect(response.status).toBe(200);
  return (response.body.evaluations as { keyVersion: number; evaluated: string[] }[]).map(
    (evaluation) => ({
      keyVersion: evaluation.keyVersion,
      tokens: evaluation.evaluated.map((evaluated, index) =>
        b64(
          oprf
            .finalize(
              inputs[index] as Uint8Array,
              (blinds[index] as { blind: Uint8Array }).blind,
              Buffer.from(evaluated, 'base64'),
            )
            .slice(0, 32),
        ),
      ),
    }),
  );
};

const publish = async (device: TestDevice, number: string) => {
  const [current] = await tokensOf(device, [number]);
  return http(
    device.baseUrl,
    'PUT',
    '/v1/discovery/token',
    { keyVersion: current?.keyVersion, token: current?.tokens[0] },
    device.token,
  );
};

/** The account ids found for each number, through every active key. */
const lookup = async (device: TestDevice, numbers: string[]): Promise<string[][]> => {
  const evaluations = await tokensOf(device, numbers);
  const tokens = evaluations.flatMap((evaluation) => evaluation.tokens);
  const response = await http(
    device.baseUrl,
    'POST',
    '/v1/discovery/lookup',
    { tokens },
    device.token,
  );
  expect(response.status).toBe(200);
  const matches = response.body.matches as { token: string; accountId: string }[];
  return numbers.map((_, index) =>
    matches
      .filter((match) => evaluations.some((evaluation) => evaluation.tokens[index] === match.token))
      .map((match) => match.accountId),
  );
};

const number = (): string =>
  `+1555${String(1_000_000 + Math.floor(randomBytes(3).readUIntBE(0, 3) % 8_999_999)).slice(0, 7)}`;

describe('discovery', () => {
  it('finds an account by its published token, and nothing for other numbers or after removal', async () => {
    const relay = await relayWith();
    const [alice, bob] = [await registered(relay), await registered(relay)];
    const aliceNumber = number();
    expect((await publish(alice, aliceNumber)).status).toBe(204);
    expect(await lookup(bob, [aliceNumber, number()])).toEqual([[alice.accountId], []]);
    const status = await http(relay.url, 'GET', '/v1/discovery/token', undefined, alice.token);
    expect(status.body).toEqual({ keyVersion: 1, publishedKeyVersion: 1 });
    expect(
      (await http(relay.url, 'DELETE', '/v1/discovery/token', undefined, alice.token)).status,
    ).toBe(204);
    expect(await lookup(bob, [aliceNumber])).toEqual([[]]);
  });

  it('refuses batches over the cap, elements that are not group elements, and requests without a token', async () => {
    const relay = await relayWith();
    const device = await registered(relay);
    const element = (bytes: Buffer) => ({ blinded: [b64(bytes)] });
    const over = {
      blinded: Array.from({ length: 101 }, () => b64(oprf.blind(randomBytes(8)).blinded)),
    };
    for (const body of [
      over,
      element(Buffer.alloc(32)),
      element(Buffer.alloc(32, 0xff)),
      { blinded: [] },
    ]) {
      const response = await http(relay.url, 'POST', '/v1/discovery/evaluate', body, device.token);
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('VALIDATION_FAILED');
    }
    const tooMany = { tokens: Array.from({ length: 201 }, () => b64(randomBytes(32))) };
    expect(
      (await http(relay.url, 'POST', '/v1/discovery/lookup', tooMany, device.token)).status,
    ).toBe(400);
    expect(
      (await http(relay.url, 'POST', '/v1/discovery/lookup', { tokens: [b64(randomBytes(32))] }))
        .status,
    ).toBe(401);
  });

  it('answers 404 DISCOVERY_NOT_CONFIGURED on a relay with DATABASE_URL and no key', async () => {
    const relay = await relayWith({ DISCOVERY_KEY: '' });
    const device = await registered(relay);
    const response = await http(relay.url, 'GET', '/v1/discovery/token', undefined, device.token);
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('DISCOVERY_NOT_CONFIGURED');
  });
});

describe('discovery quotas', () => {
  const refused = (response: {
    status: number;
    headers: Headers;
    body: { error: { code: string } };
  }) => {
    expect(response.status).toBe(429);
    expect(response.body.error.code).toBe('RATE_LIMITED');
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
  };
  const evaluate = (device: TestDevice, count: number) =>
    http(
      device.baseUrl,
      'POST',
      '/v1/discovery/evaluate',
      { blinded: Array.from({ length: count }, () => b64(oprf.blind(randomBytes(8)).blinded)) },
      device.token,
    );
  const lookupTokens = (device: TestDevice, count: number) =>
    http(
      device.baseUrl,
      'POST',
      '/v1/discovery/lookup',
      { tokens: Array.from({ length: count }, () => b64(randomBytes(32))) },
      device.token,
    );

  it('refuses an account over its evaluation or lookup quota with 429 while another account is served', async () => {
    const relay = await relayWith({
      RATE_LIMIT_DISCOVERY_EVALUATE: '100/3600',
      RATE_LIMIT_DISCOVERY_LOOKUP: '200/3600',
    });
    const [greedy, other] = [await registered(relay), await registered(relay)];
    expect((await evaluate(greedy, 100)).status).toBe(200);
    refused(await evaluate(greedy, 1));
    expect((await evaluate(other, 10)).status).toBe(200);
    expect((await lookupTokens(greedy, 200)).status).toBe(200);
    refused(await lookupTokens(greedy, 1));
    expect((await lookupTokens(other, 10)).status).toBe(200);
    // Another device of the greedy account shares its quota.
    const laptop = await TestDevice.link(greedy);
    await laptop.authenticate();
    refused(await evaluate(laptop, 1));
  });

  it('refuses every account behind an address over the address quota', async () => {
    const relay = await relayWith({ RATE_LIMIT_DISCOVERY_ADDRESS: '200/3600' });
    const [first, second, third] = [
      await registered(relay),
      await registered(relay),
      await registered(relay),
    ];
    expect((await evaluate(first, 100)).status).toBe(200);
    expect((await lookupTokens(second, 100)).status).toBe(200);
    refused(await evaluate(third, 1));
    refused(await lookupTokens(first, 1));
  });
});

describe('discovery key rotation', () => {
  it('keeps published tokens found during the grace period, and clients that publish again stay found after it', async () => {
    const oldKey = formatDiscoveryKey(newDiscoveryKey(1));
    const before = await relayWith({ DISCOVERY_KEY: oldKey });
    const [alice, bob, carol] = [
      await registered(before),
      await registered(before),
      await registered(before),
    ];
    const [aliceNumber, bobNumber] = [number(), number()];
    expect((await publish(alice, aliceNumber)).status).toBe(204);
    expect((await publish(bob, bobNumber)).status).toBe(204);

    // The operator rotates (the admin command prints the new settings) and restarts.
    const rotation = await runServerScript(
      'cli/admin.ts',
      ['discovery', 'rotate-key', '--grace-days', '7'],
      {
        DATABASE_URL: databaseUrl,
        DISCOVERY_KEY: oldKey,
      },
    );
    expect(rotation.code, rotation.stderr).toBe(0);
    const settings = Object.fromEntries(
      rotation.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(/=(.*)/s).slice(0, 2)),
    ) as Record<string, string>;
    expect(settings.DISCOVERY_KEY).toMatch(/^2:/);
    expect(settings.DISCOVERY_PREVIOUS_KEY).toBe(oldKey);
    expect(rotation.stderr).not.toContain(oldKey);
    const during = await relayWith(settings);
    for (const device of [alice, bob, carol]) device.baseUrl = during.url;

    // Grace period: both keys evaluate, the old tokens are found.
    expect(await lookup(carol, [aliceNumber, bobNumber])).toEqual([
      [alice.accountId],
      [bob.accountId],
    ]);
    // A publication under the old version is refused; alice's client sees the new version and publishes again.
    const stale = await http(
      during.url,
      'PUT',
      '/v1/discovery/token',
      { keyVersion: 1, token: b64(randomBytes(32)) },
      alice.token,
    );
    expect(stale.status).toBe(409);
    expect(stale.body.error.code).toBe('DISCOVERY_KEY_ROTATED');
    expect(
      (await http(during.url, 'GET', '/v1/discovery/token', undefined, alice.token)).body,
    ).toEqual({
      keyVersion: 2,
      publishedKeyVersion: 1,
    });
    expect((await publish(alice, aliceNumber)).status).toBe(204);

    // After the grace period only the new key evaluates: alice is found, bob (who never
    // refreshed) is not until his client publishes again.
    const after = await relayWith({
      ...settings,
      DISCOVERY_PREVIOUS_KEY_UNTIL: new Date(Date.now() - 1000).toISOString(),
    });
    for (const device of [alice, bob, carol]) device.baseUrl = after.url;
    expect(
      (await tokensOf(carol, [aliceNumber])).map((evaluation) => evaluation.keyVersion),
    ).toEqual([2]);
    expect(await lookup(carol, [aliceNumber, bobNumber])).toEqual([[alice.accountId], []]);
    expect((await publish(bob, bobNumber)).status).toBe(204);
    expect(await lookup(carol, [bobNumber])).toEqual([[bob.accountId]]);

    // A second rotation during the grace period would drop tokens not yet republished: refused.
    const again = await runServerScript('cli/admin.ts', ['discovery', 'rotate-key'], {
      DATABASE_URL: databaseUrl,
      ...settings,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/grace period runs until .*pass --force/);
    expect(again.stdout).toBe('');
  });

  it('the rotate command refuses a bad grace period, and a relay without a key', async () => {
    const badGrace = await runServerScript(
      'cli/admin.ts',
      ['discovery', 'rotate-key', '--grace-days', '0'],
      { DATABASE_URL: databaseUrl },
    );
    expect(badGrace.code).toBe(2);
    expect(badGrace.stderr).toMatch(/--grace-days must be an integer from 1 to 365/);
    const off = await runServerScript('cli/admin.ts', ['discovery', 'rotate-key'], {
      DATABASE_URL: databaseUrl,
    });
    expect(off.code).toBe(1);
    expect(off.stderr).toMatch(/discovery is off on this relay/);
  });

  it('rotates the key files of an embedded relay, deleting no token it could still match', async () => {
    // DATA_DIR itself from mkdtemp, as in admin.integration.test.ts: the embedded PostgreSQL
    // (run as `postgres` when the tests run as root) must be able to reach it.
    const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-rotate-'));
    try {
      const before = readDiscoveryKeyFiles(`${dataDir}-secrets`);
      const result = await runServerScript(
        'cli/admin.ts',
        ['discovery', 'rotate-key', '--grace-days', '3'],
        { DATA_DIR: dataDir, JWT_SECRET: '' },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(
        /^discovery key rotated to version 2; version 1 evaluates until \S+; 0 token\(s\) under older keys deleted\.\nThe keys are in /,
      );
      const after = readDiscoveryKeyFiles(`${dataDir}-secrets`);
      expect(after.current.version).toBe(2);
      expect(after.previous).toMatchObject(before.current);
      expect((after.previous?.until.getTime() ?? 0) - Date.now()).toBeGreaterThan(2.9 * 86_400_000);
      // The key is in no output.
      for (const key of [before.current, after.current]) {
        expect(result.stdout + result.stderr).not.toContain(
          Buffer.from(key.seed).toString('base64'),
        );
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(`${dataDir}-secrets`, { recursive: true, force: true });
    }
  });

  it('keeps the keys in SECRETS_DIR with mode 0600, and rotates them there', () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'privcomm-discovery-')), 'secrets');
    const first = readDiscoveryKeyFiles(dir);
    expect(first.current.version).toBe(1);
    expect(statSync(path.join(dir, 'discovery_key')).mode & 0o777).toBe(0o600);
    expect(readDiscoveryKeyFiles(dir)).toEqual(first);
    const until = new Date(Date.now() + 86_400_000);
    const rotated = rotateDiscoveryKeyFiles(dir, until);
    expect(readDiscoveryKeyFiles(dir)).toEqual(rotated);
    expect(rotated.current.version).toBe(2);
    expect(rotated.previous).toEqual({ ...first.current, until });
    expect(statSync(path.join(dir, 'discovery_previous_key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dir, 'discovery_previous_key'), 'utf8')).toContain(
      until.toISOString(),
    );
  });
});
