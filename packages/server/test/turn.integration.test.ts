import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, TurnCredentialsSchema, type TurnCredentials } from '@privcomm/wire';
import { loadConfig, VARIABLES } from '../src/config.ts';
import {
  createTestDatabase,
  dumpDatabase,
  http,
  productionCoturnConfig,
  startCoturn,
  startRelay,
  TestDevice,
  throwawayCoturnConfig,
  type Coturn,
  type CoturnConfigFor,
  type TestRelay,
} from './support/index.ts';

/**
 * GET /v1/turn against a real coturn: the relay's credentials must be the ones coturn's
 * use-auth-secret accepts, and nothing else may be. Each run starts its own throwaway turnserver
 * on loopback (ports below 32768: in the ephemeral range coturn can collide and then never
 * answer), with a random secret, and proves credentials with turnutils_uclient.
 */

const PRODUCTION_CONFIG = new URL('../../../config/turnserver.conf', import.meta.url);

/** The denied-peer-ip ranges the production config must carry, in coturn's start-end syntax. */
const REQUIRED_DENIED = [
  '0.0.0.0-0.255.255.255', // 0.0.0.0/8
  '10.0.0.0-10.255.255.255', // 10/8
  '100.64.0.0-100.127.255.255', // 100.64/10
  '127.0.0.0-127.255.255.255', // 127/8
  '169.254.0.0-169.254.255.255', // 169.254/16
  '172.16.0.0-172.31.255.255', // 172.16/12
  '192.168.0.0-192.168.255.255', // 192.168/16
  '::1',
  'fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', // fc00::/7
  'fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', // fe80::/10
  '::ffff:0.0.0.0-::ffff:255.255.255.255', // ::ffff:0:0/96
  '::1-::ffff:ffff', // IPv4-compatible ::/96 (from ::1: `::` breaks coturn 4.6.1)
  '64:ff9b::-64:ff9b::ffff:ffff', // NAT64 64:ff9b::/96
  '64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff', // local-use NAT64 64:ff9b:1::/48
  '2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff', // 6to4 2002::/16
  '2001::-2001:0:ffff:ffff:ffff:ffff:ffff:ffff', // Teredo 2001::/32
];

const hmac = (secret: string, username: string): string =>
  createHmac('sha1', secret).update(username).digest('base64');

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/**
 * config/turnserver.conf as shipped, moved onto loopback (no certificate here: no TLS listener);
 * `edit` may change the remaining lines.
 */
const productionConfig = (secret: string, edit?: (lines: string[]) => string[]): CoturnConfigFor =>
  productionCoturnConfig(
    secret,
    ({ port, minPort, maxPort }) => [
      'listening-ip=127.0.0.1',
      'relay-ip=127.0.0.1',
      `listening-port=${port}`,
      `min-port=${minPort}`,
      `max-port=${maxPort}`,
      'no-tls',
    ],
    edit,
  );

interface UclientResult {
  /** null when killed (timeout). */
  readonly code: number | null;
  readonly output: string;
}

/** turnutils_uclient in client-to-client mode: two allocations that exchange 10 messages. */
const uclient = (port: number, username: string, password: string): Promise<UclientResult> =>
  new Promise((resolve) => {
    const args = [
      '-p',
      String(port),
      '-u',
      username,
      '-w',
      password,
      '-y',
      '-n',
      '10',
      '127.0.0.1',
    ];
    const child = spawn('turnutils_uclient', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output: chunks.join('') });
    });
  });

const expectAccepted = (result: UclientResult): void => {
  expect(result.code, result.output.slice(-1500)).toBe(0);
};

/** Refused by coturn: uclient gave up on its own (not our timeout) with a failure code. */
const expectRefused = (result: UclientResult, because: string): void => {
  expect(result.code, result.output.slice(-1500)).not.toBeNull();
  expect(result.code, result.output.slice(-1500)).not.toBe(0);
  expect(result.output).toContain(because);
};

const checkCredentials = Compile(TurnCredentialsSchema);

let drop: (() => Promise<void>) | undefined;
let databaseUrl: string;
beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
});
afterAll(async () => {
  await drop?.();
});

describe('GET /v1/turn with a real coturn', () => {
  const secret = randomBytes(32).toString('hex');
  let coturn: Coturn | undefined;
  let relay: TestRelay | undefined;
  let turnUrl: string;

  beforeAll(async () => {
    coturn = await startCoturn(secret, throwawayCoturnConfig(secret));
    turnUrl = `turn:127.0.0.1:${coturn.port}?transport=udp`;
    relay = await startRelay(databaseUrl, {
      TURN_URLS: turnUrl,
      TURN_SECRET: secret,
      TURN_TTL_SECONDS: '600',
    });
  }, 60_000);
  afterAll(async () => {
    await relay?.close();
    await coturn?.stop();
  });

  const fetchCredentials = async (device: TestDevice) => {
    const result = await device.request<TurnCredentials>('GET', '/v1/turn');
    expect(result.status, JSON.stringify(result.body)).toBe(200);
    return result;
  };

  it('issues credentials in coturn REST-API form that coturn accepts', async () => {
    const device = await TestDevice.register(relay!.url);
    const before = nowSeconds();
    const result = await fetchCredentials(device);
    const after = nowSeconds();
    const credentials = result.body;
    expect(checkCredentials.Check(credentials), JSON.stringify(credentials)).toBe(true);
    expect(credentials.urls).toEqual([turnUrl]);
    expect(credentials.ttlSeconds).toBe(600);
    const [expiry, opaque] = credentials.username.split(':');
    expect(Number(expiry)).toBeGreaterThanOrEqual(before + 600);
    expect(Number(expiry)).toBeLessThanOrEqual(after + 600);
    expect(opaque).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(credentials.password).toBe(hmac(secret, credentials.username));
    expect(result.headers.get('cache-control')).toBe('no-store');

    expectAccepted(await uclient(coturn!.port, credentials.username, credentials.password));
  }, 60_000);

  it('refuses a wrong password, and a username whose expiry was changed', async () => {
    const device = await TestDevice.register(relay!.url);
    const { username, password } = (await fetchCredentials(device)).body;
    const wrong = hmac(randomBytes(32).toString('hex'), username);
    expectRefused(await uclient(coturn!.port, username, wrong), 'Cannot complete Allocation');
    // The expiry is covered by the HMAC: a client cannot extend its credentials.
    const [expiry, opaque] = username.split(':');
    const extended = `${Number(expiry) + 86_400}:${opaque}`;
    expectRefused(await uclient(coturn!.port, extended, password), 'Cannot complete Allocation');
  }, 60_000);

  it('refuses an expired username signed with the right secret', async () => {
    const device = await TestDevice.register(relay!.url);
    const { username } = (await fetchCredentials(device)).body;
    const opaque = username.split(':')[1];
    const expired = `${nowSeconds() - 60}:${opaque}`;
    expectRefused(
      await uclient(coturn!.port, expired, hmac(secret, expired)),
      'Cannot complete Allocation',
    );
  }, 60_000);

  it('never puts the account or device id in the username, and mints a fresh id each time', async () => {
    const primary = await TestDevice.register(relay!.url);
    const linked = await TestDevice.link(primary);
    const issued: TurnCredentials[] = [];
    for (const device of [primary, linked, primary, linked, primary]) {
      issued.push((await fetchCredentials(device)).body);
    }
    const opaques = issued.map((credentials) => credentials.username.split(':')[1] ?? '');
    expect(new Set(opaques).size).toBe(issued.length);
    const compact = primary.accountId.replaceAll('-', '');
    for (const { username, password } of issued) {
      expect(username).toMatch(/^\d+:[A-Za-z0-9_-]{22}$/);
      for (const text of [
        username,
        Buffer.from(username.split(':')[1] ?? '', 'base64url').toString('hex'),
      ]) {
        expect(text).not.toContain(primary.accountId);
        expect(text.toLowerCase()).not.toContain(compact);
        // No 8-hex-digit group of the account id either.
        for (const group of primary.accountId.split('-')) {
          if (group.length >= 8) expect(text.toLowerCase()).not.toContain(group);
        }
      }
      expect(password).toBe(hmac(secret, username));
    }
    // Nothing of them is stored or logged.
    const dump = await dumpDatabase(databaseUrl);
    const logs = relay!.logs.join('\n');
    for (const { username, password } of issued) {
      for (const text of [username, username.split(':')[1] ?? '', password]) {
        expect(dump).not.toContain(text);
        expect(logs).not.toContain(text);
      }
    }
    expect(logs).not.toContain(secret);
  });

  it('answers 401 without a valid token', async () => {
    for (const token of [undefined, 'x.y.z', `${randomBytes(20).toString('base64url')}`]) {
      const result = await http(relay!.url, 'GET', '/v1/turn', undefined, token);
      expect(result.status).toBe(401);
      expect(result.body).toEqual({
        error: { code: 'UNAUTHENTICATED', message: ERRORS.UNAUTHENTICATED.message },
      });
      expect(JSON.stringify(result.body)).not.toContain(secret);
    }
  });

  it('is documented in the OpenAPI document', async () => {
    const spec = await http(relay!.url, 'GET', '/openapi.json');
    expect(spec.status).toBe(200);
    expect(Object.keys(spec.body.paths)).toContain('/v1/turn');
    expect(Object.keys(spec.body.paths['/v1/turn'].get.responses).sort()).toEqual([
      '200',
      '401',
      '404',
      '429',
    ]);
  });
});

describe('GET /v1/turn without TURN_URLS', () => {
  let relay: TestRelay | undefined;
  beforeAll(async () => {
    relay = await startRelay(databaseUrl);
  });
  afterAll(async () => {
    await relay?.close();
  });

  it('answers 404 TURN_NOT_CONFIGURED to an authenticated device', async () => {
    expect(relay!.relay.context.config.turn).toBeUndefined();
    const device = await TestDevice.register(relay!.url);
    const result = await device.request('GET', '/v1/turn');
    expect(result.status).toBe(404);
    expect(result.body).toEqual({
      error: { code: 'TURN_NOT_CONFIGURED', message: ERRORS.TURN_NOT_CONFIGURED.message },
    });
    expect(ERRORS.TURN_NOT_CONFIGURED.status).toBe(404);
  });

  it('answers 401 first to a request without a token', async () => {
    const result = await http(relay!.url, 'GET', '/v1/turn');
    expect(result.status).toBe(401);
    expect(result.body.error.code).toBe('UNAUTHENTICATED');
  });
});

describe('GET /v1/turn rate limit', () => {
  const secret = randomBytes(32).toString('hex');
  let relay: TestRelay | undefined;
  beforeAll(async () => {
    // No TURN server is needed to mint credentials.
    relay = await startRelay(databaseUrl, {
      TURN_URLS:
        'turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349?transport=tcp',
      TURN_SECRET: secret,
      RATE_LIMIT_TURN: '3/3600',
    });
  });
  afterAll(async () => {
    await relay?.close();
  });

  it('answers 429 with Retry-After once an account used its bucket, whichever device asks', async () => {
    const primary = await TestDevice.register(relay!.url);
    for (let i = 0; i < 3; i += 1) {
      const ok = await primary.request('GET', '/v1/turn');
      expect(ok.status).toBe(200);
      expect(ok.body.urls).toEqual([
        'turn:turn.example.org:3478?transport=udp',
        'turns:turn.example.org:5349?transport=tcp',
      ]);
      expect(ok.body.ttlSeconds).toBe(3600);
    }
    const limited = await primary.request('GET', '/v1/turn');
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
    expect(limited.body.retryAfterSeconds).toBeGreaterThan(0);
    expect(limited.body.retryAfterSeconds).toBeLessThanOrEqual(3600);
    expect(limited.headers.get('retry-after')).toBe(String(limited.body.retryAfterSeconds));
    expect(limited.body.username).toBeUndefined();

    // The account's devices share its bucket (each credential may hold coturn's user-quota
    // allocations, so more devices must not mean more credentials); another account has its own.
    const linked = await TestDevice.link(primary);
    expect((await linked.request('GET', '/v1/turn')).status).toBe(429);
    const other = await TestDevice.register(relay!.url);
    expect((await other.request('GET', '/v1/turn')).status).toBe(200);
    expect((await primary.request('GET', '/v1/turn')).status).toBe(429);
  });
});

/** `name[=value]` lines of a coturn config, comments and blank lines dropped. */
const options = (text: string): { name: string; value: string | undefined }[] =>
  text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const at = line.indexOf('=');
      return at === -1
        ? { name: line, value: undefined }
        : { name: line.slice(0, at).trim(), value: line.slice(at + 1).trim() };
    });

describe('config/turnserver.conf', () => {
  const text = readFileSync(PRODUCTION_CONFIG, 'utf8');
  const parsed = options(text);
  const values = (name: string) =>
    parsed.filter((option) => option.name === name).map((option) => option.value);
  const has = (name: string) => parsed.some((option) => option.name === name);

  it('denies every private, loopback, link-local, CGNAT, ULA range and every IPv6 form of IPv4 (mapped, compatible, NAT64, 6to4, Teredo)', () => {
    const denied = values('denied-peer-ip');
    for (const range of REQUIRED_DENIED) expect(denied, range).toContain(range);
    // coturn's syntax is an address or start-end, never CIDR.
    for (const range of denied) expect(range, range).not.toContain('/');
    expect(values('allowed-peer-ip')).toHaveLength(1);
  });

  it('enables no CLI, no web admin, no loopback peers and no verbose logging', () => {
    const forbidden = [
      'cli-ip',
      'cli-port',
      'cli-password',
      'web-admin',
      'web-admin-ip',
      'web-admin-port',
      'web-admin-listen-on-workers',
      'allow-loopback-peers',
      'verbose',
      'Verbose',
      'log-binding',
      'no-auth',
      'lt-cred-mech',
      'no-udp',
      'no-tcp',
      'no-tls',
    ];
    for (const name of forbidden) expect(has(name), name).toBe(false);
    // No line enables either, even spelled with a value or dashes.
    for (const line of text.split('\n').filter((l) => !l.trim().startsWith('#'))) {
      expect(line).not.toMatch(/^\s*-*(cli-|web-admin)/);
    }
  });

  it('hardens listeners, authentication, quotas and disclosure', () => {
    for (const flag of [
      'use-auth-secret',
      'fingerprint',
      'no-cli',
      'no-multicast-peers',
      'no-tcp-relay',
      'no-software-attribute',
      'simple-log',
    ]) {
      expect(values(flag), flag).toEqual([undefined]);
    }
    expect(values('static-auth-secret')).toHaveLength(1);
    expect(values('realm')[0]).toMatch(/^[a-z0-9.-]+$/);
    expect(values('listening-port')).toEqual(['3478']);
    expect(values('tls-listening-port')).toEqual(['5349']);
    expect(values('cert')[0]).toMatch(/^\/.+\.pem$/);
    expect(values('pkey')[0]).toMatch(/^\/.+\.pem$/);
    expect(values('log-file')).toEqual(['stdout']);
    for (const quota of ['user-quota', 'total-quota', 'max-bps']) {
      const [value] = values(quota);
      expect(value, quota).toMatch(/^[1-9][0-9]*$/);
    }
    expect(Number(values('user-quota')[0])).toBeLessThan(Number(values('total-quota')[0]));
    // Every option is explained by a comment somewhere above it in its block.
    const lines = text.split('\n');
    lines.forEach((line, index) => {
      if (line.trim() === '' || line.startsWith('#')) return;
      const block = lines.slice(0, index).reverse();
      const end = block.findIndex((l) => l.trim() === '');
      const above = end === -1 ? block : block.slice(0, end);
      expect(
        above.some((l) => l.startsWith('#')),
        `no comment explains "${line}"`,
      ).toBe(true);
    });
  });

  it("quotas match the relay's defaults: no fewer than 20 accounts can take every allocation", () => {
    // What one account can hold at once with the relay's defaults: the credentials it can get
    // within one credential lifetime (its burst, plus one per refill period), each with up to
    // user-quota allocations (every credential has a username of its own).
    const config = loadConfig({ JWT_SECRET: randomBytes(32).toString('base64') });
    const { burst, refillSeconds } = config.rateLimits.turn;
    const ttlSeconds = Number(VARIABLES.TURN_TTL_SECONDS.default);
    const credentialsPerAccount = burst + Math.ceil(ttlSeconds / refillSeconds);
    const userQuota = Number(values('user-quota')[0]);
    const totalQuota = Number(values('total-quota')[0]);
    const perAccount = credentialsPerAccount * userQuota;
    expect(Math.floor(totalQuota / perAccount)).toBeGreaterThanOrEqual(20);
    // And a call still fits in one credential: one allocation per URL per interface (3 x 2).
    expect(userQuota).toBeGreaterThanOrEqual(6);
  });

  it('is accepted by coturn, which lists each denied range, and it refuses loopback peers', async () => {
    const secret = randomBytes(32).toString('hex');
    const coturn = await startCoturn(secret, productionConfig(secret));
    let relayed: Coturn | undefined;
    try {
      const output = coturn.output();
      expect(output).not.toContain('Bad configuration format');
      for (const range of REQUIRED_DENIED) expect(output).toContain(`Black listing: ${range}\n`);
      const username = `${nowSeconds() + 600}:${randomBytes(16).toString('base64url')}`;
      // Valid credentials, but both relayed addresses are on 127.0.0.1: a denied peer.
      expectRefused(await uclient(coturn.port, username, hmac(secret, username)), 'Forbidden IP');
      await coturn.stop();

      // The same configuration without the loopback rule relays: the refusal above came from
      // that rule, and nothing else in the production config gets in the way of a call.
      relayed = await startCoturn(
        secret,
        productionConfig(secret, (lines) => [
          ...lines.filter((line) => line !== 'denied-peer-ip=127.0.0.0-127.255.255.255'),
          'allow-loopback-peers',
        ]),
      );
      expectAccepted(await uclient(relayed.port, username, hmac(secret, username)));
    } finally {
      await coturn.stop();
      await relayed?.stop();
    }
  }, 90_000);
});
