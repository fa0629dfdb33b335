import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  environmentWithDotenv,
  loadConfig,
  VARIABLES,
  type VariableName,
} from '../src/config.ts';

const SECRET = randomBytes(32).toString('base64');
/** coturn's static-auth-secret is used as text, not decoded. */
const TURN_SECRET = `${randomBytes(24).toString('base64')}+/=`;
/** External-database mode: no files are touched. */
const EXTERNAL = { DATABASE_URL: 'postgres://relay@db.internal:5432/privcomm', JWT_SECRET: SECRET };
const DISCOVERY_SEED = randomBytes(32);
const DISCOVERY_KEY = `1:${DISCOVERY_SEED.toString('base64')}`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'privcomm-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const configError = (run: () => unknown): ConfigError => {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
};

const mode = (file: string): number => statSync(file).mode & 0o777;

describe('loadConfig defaults', () => {
  it('gives every documented default', () => {
    const config = loadConfig({ JWT_SECRET: SECRET, DISCOVERY_KEY }, dir);
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 8000,
      dataDir: path.join(dir, 'data'),
      secretsDir: path.join(dir, 'data-secrets'),
      movedSecrets: [],
      databaseUrl: undefined,
      databasePoolSize: 10,
      migrateOnStart: true,
      jwtSecret: new Uint8Array(Buffer.from(SECRET, 'base64')),
      jwtVerifySecrets: [],
      registration: 'open',
      logLevel: 'info',
      trustProxy: false,
      envelopeTtlDays: 30,
      queue: { maxEnvelopes: 10_000, maxBytes: 64 * 1024 * 1024 },
      sendBytesPerHour: 32 * 1024 * 1024,
      metricsToken: undefined,
      rateLimits: {
        registration: { burst: 6, refillSeconds: 30 },
        auth: { burst: 30, refillSeconds: 2 },
        prekeyFetch: { burst: 6, refillSeconds: 600 },
        prekeyRequester: { burst: 200, refillSeconds: 18 },
        prekeyTarget: { burst: 10, refillSeconds: 360 },
        messages: { burst: 60, refillSeconds: 1 },
        turn: { burst: 6, refillSeconds: 600 },
        login: { burst: 100, refillSeconds: 0.1 },
      },
      ws: {
        authTimeoutMs: 5000,
        idleTimeoutMs: 90_000,
        ackTimeoutMs: 60_000,
        window: 128,
        windowBytes: 1_048_576,
        directWindowMs: 150,
        unauthenticatedPerAddress: 50,
      },
      janitorIntervalMs: 600_000,
      provisioningTimeoutMs: 600_000,
      turn: undefined,
      discovery: {
        keys: { current: { version: 1, seed: new Uint8Array(DISCOVERY_SEED) } },
        rateLimits: {
          evaluate: { burst: 1000, refillSeconds: 60 },
          lookup: { burst: 2000, refillSeconds: 30 },
          address: { burst: 5000, refillSeconds: 10 },
        },
      },
      devTurn: { ttlSeconds: 3600 },
    });
    expect(config.turn).toBeUndefined();
    // A secret from the environment means nothing is written.
    expect(existsSync(path.join(dir, 'data'))).toBe(false);
    expect(existsSync(path.join(dir, 'data-secrets'))).toBe(false);
  });

  it('treats empty and blank values as unset, and trims values', () => {
    const config = loadConfig(
      { ...EXTERNAL, PORT: '', HOST: '   ', LOG_LEVEL: ' debug ', METRICS_TOKEN: ' ' },
      dir,
    );
    expect(config.port).toBe(8000);
    expect(config.host).toBe('127.0.0.1');
    expect(config.logLevel).toBe('debug');
    expect(config.metricsToken).toBeUndefined();
  });

  it('reads every variable it documents', () => {
    const config = loadConfig(
      {
        ...EXTERNAL,
        HOST: '0.0.0.0',
        PORT: '0',
        DATA_DIR: '/var/lib/privcomm',
        DATABASE_POOL_SIZE: '100',
        MIGRATE_ON_START: 'FALSE',
        REGISTRATION: 'invite',
        LOG_LEVEL: 'silent',
        TRUST_PROXY: '1',
        ENVELOPE_TTL_DAYS: '90',
        QUEUE_MAX_ENVELOPES: '1',
        QUEUE_MAX_BYTES: '98304',
        SEND_BYTES_PER_HOUR: '589824',
        METRICS_TOKEN: 'scrape-me',
        RATE_LIMIT_REGISTRATION: '1/0.5',
        RATE_LIMIT_AUTH: '1000000/86400',
        RATE_LIMIT_PREKEY_FETCH: '3/60',
        RATE_LIMIT_PREKEY_REQUESTER: '7/9',
        RATE_LIMIT_PREKEY_TARGET: '2/3',
        RATE_LIMIT_MESSAGES: '10/2',
        RATE_LIMIT_TURN: '5/60',
        WS_AUTH_TIMEOUT_MS: '100',
        WS_IDLE_TIMEOUT_MS: '3600000',
        WS_ACK_TIMEOUT_MS: '250',
        WS_WINDOW: '1000',
        WS_WINDOW_BYTES: '1024',
        WS_DIRECT_WINDOW_MS: '0',
        JANITOR_INTERVAL_MS: '100',
        PROVISIONING_TIMEOUT_MS: '100',
        TURN_URLS:
          ' turn:turn.example.org:3478?transport=udp , turn:[2001:db8::1]?transport=tcp,turns:192.0.2.7:5349 ',
        TURN_SECRET: TURN_SECRET,
        TURN_TTL_SECONDS: '60',
      },
      dir,
    );
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 0,
      dataDir: '/var/lib/privcomm',
      databaseUrl: EXTERNAL.DATABASE_URL,
      databasePoolSize: 100,
      migrateOnStart: false,
      registration: 'invite',
      logLevel: 'silent',
      trustProxy: 1,
      envelopeTtlDays: 90,
      queue: { maxEnvelopes: 1, maxBytes: 98_304 },
      sendBytesPerHour: 589_824,
      metricsToken: 'scrape-me',
      rateLimits: {
        registration: { burst: 1, refillSeconds: 0.5 },
        auth: { burst: 1_000_000, refillSeconds: 86_400 },
        prekeyFetch: { burst: 3, refillSeconds: 60 },
        prekeyRequester: { burst: 7, refillSeconds: 9 },
        prekeyTarget: { burst: 2, refillSeconds: 3 },
        messages: { burst: 10, refillSeconds: 2 },
        turn: { burst: 5, refillSeconds: 60 },
      },
      ws: {
        authTimeoutMs: 100,
        idleTimeoutMs: 3_600_000,
        ackTimeoutMs: 250,
        window: 1000,
        windowBytes: 1024,
        directWindowMs: 0,
      },
      janitorIntervalMs: 100,
      provisioningTimeoutMs: 100,
    });
    expect(config.turn).toEqual({
      urls: [
        'turn:turn.example.org:3478?transport=udp',
        'turn:[2001:db8::1]?transport=tcp',
        'turns:192.0.2.7:5349',
      ],
      secret: TURN_SECRET,
      ttlSeconds: 60,
    });
    expect(loadConfig({ ...EXTERNAL, DATABASE_URL: 'postgresql://x@y/z' }, dir).databaseUrl).toBe(
      'postgresql://x@y/z',
    );
  });
});

describe('loadConfig refuses wrong values, naming the variable', () => {
  const wrong: [VariableName, string][] = [
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['PORT', '8000abc'],
    ['PORT', '0x1f90'],
    ['HOST', 'bad host'],
    ['HOST', 'evil;rm -rf'],
    ['DATABASE_POOL_SIZE', '0'],
    ['DATABASE_POOL_SIZE', '101'],
    ['MIGRATE_ON_START', 'maybe'],
    ['MIGRATE_ON_START', 'yes'],
    ['TRUST_PROXY', 'on'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', 'TRUE'],
    ['TRUST_PROXY', '11'],
    ['TRUST_PROXY', '-1'],
    ['TRUST_PROXY', '127.0.0.1,'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['TRUST_PROXY', 'fd00::/129'],
    ['TRUST_PROXY', '10.0.0.0/8/8'],
    ['TRUST_PROXY', 'proxy.example.org'],
    ['QUEUE_MAX_ENVELOPES', '0'],
    ['QUEUE_MAX_BYTES', '98303'],
    ['SEND_BYTES_PER_HOUR', '589823'],
    ['RATE_LIMIT_PREKEY_REQUESTER', '0/1'],
    ['RATE_LIMIT_PREKEY_TARGET', '10'],
    ['REGISTRATION', 'closed'],
    ['REGISTRATION', 'OPEN'],
    ['LOG_LEVEL', 'loud'],
    ['LOG_LEVEL', 'warning'],
    ['ENVELOPE_TTL_DAYS', '0'],
    ['ENVELOPE_TTL_DAYS', '91'],
    ['RATE_LIMIT_REGISTRATION', 'bad'],
    ['RATE_LIMIT_REGISTRATION', '6'],
    ['RATE_LIMIT_AUTH', '0/1'],
    ['RATE_LIMIT_AUTH', '6/0'],
    ['RATE_LIMIT_PREKEY_FETCH', '6/-1'],
    ['RATE_LIMIT_PREKEY_FETCH', '1000001/1'],
    ['RATE_LIMIT_MESSAGES', '6/86401'],
    ['RATE_LIMIT_MESSAGES', '6/30/2'],
    ['RATE_LIMIT_MESSAGES', '1.5/2'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_URL', 'http://db:5432/privcomm'],
    ['JWT_SECRET', randomBytes(31).toString('base64')],
    ['JWT_SECRET', 'short'],
    ['JWT_SECRET', `${'!'.repeat(44)}`],
    ['JWT_SECRET', `${SECRET.slice(0, 20)} ${SECRET.slice(20)}`],
    ['JWT_SECRET', `${SECRET}===`],
    ['WS_AUTH_TIMEOUT_MS', '99'],
    ['WS_IDLE_TIMEOUT_MS', '999'],
    ['WS_ACK_TIMEOUT_MS', '3600001'],
    ['WS_WINDOW', '0'],
    ['WS_WINDOW', '1001'],
    ['WS_WINDOW_BYTES', '1023'],
    ['WS_WINDOW_BYTES', '67108865'],
    ['WS_DIRECT_WINDOW_MS', '1001'],
    ['JANITOR_INTERVAL_MS', '1e6'],
    ['RATE_LIMIT_TURN', '100'],
    ['RATE_LIMIT_TURN', '0/6'],
    ['TURN_URLS', 'stun:turn.example.org'],
    ['TURN_URLS', 'https://turn.example.org'],
    ['TURN_URLS', 'turn://turn.example.org:3478'],
    ['TURN_URLS', 'TURN:turn.example.org'],
    ['TURN_URLS', 'turn:'],
    ['TURN_URLS', 'turn:user@turn.example.org'],
    ['TURN_URLS', 'turn:-turn.example.org'],
    ['TURN_URLS', 'turn:turn.example.org/path'],
    ['TURN_URLS', 'turn:turn.example.org:0'],
    ['TURN_URLS', 'turn:turn.example.org:65536'],
    ['TURN_URLS', 'turn:turn.example.org:03478'],
    ['TURN_URLS', 'turn:turn.example.org:'],
    ['TURN_URLS', 'turn:turn.example.org?transport=sctp'],
    ['TURN_URLS', 'turn:turn.example.org?transport=UDP'],
    ['TURN_URLS', 'turn:turn.example.org?transport=udp&x=1'],
    ['TURN_URLS', 'turn:2001:db8::1'],
    ['TURN_URLS', 'turn:[2001:db8::g]:3478'],
    ['TURN_URLS', 'turn:[]'],
    ['TURN_URLS', 'turn:a.example,,turn:b.example'],
    ['TURN_URLS', 'turn:a.example,'],
    ['TURN_URLS', 'turn:a.example,turn:a.example'],
    ['TURN_URLS', 'turn:a.example turn:b.example'],
    ['TURN_SECRET', 'short'],
    ['TURN_SECRET', 'x'.repeat(31)],
    ['TURN_SECRET', 'x'.repeat(257)],
    ['TURN_SECRET', `${'x'.repeat(20)} ${'x'.repeat(20)}`],
    ['TURN_SECRET', 'é'.repeat(40)],
    ['TURN_TTL_SECONDS', '59'],
    ['TURN_TTL_SECONDS', '86401'],
    ['TURN_TTL_SECONDS', '1h'],
    ['DISCOVERY_KEY', 'secret'],
    ['DISCOVERY_KEY', `0:${SECRET}`],
    ['DISCOVERY_KEY', `1:${randomBytes(31).toString('base64')}`],
    ['DISCOVERY_KEY', SECRET],
    ['DISCOVERY_PREVIOUS_KEY', DISCOVERY_KEY],
    ['DISCOVERY_PREVIOUS_KEY_UNTIL', '2027-01-15T00:00:00Z'],
    ['RATE_LIMIT_DISCOVERY_EVALUATE', '99/1'],
    ['RATE_LIMIT_DISCOVERY_LOOKUP', '199/1'],
    ['RATE_LIMIT_DISCOVERY_ADDRESS', 'lots'],
  ];

  it.each(wrong)('%s=%s', (variable, value) => {
    const error = configError(() => loadConfig({ ...EXTERNAL, [variable]: value }, dir));
    expect(error.variable).toBe(variable);
    expect(error.message.startsWith(`${variable}: `)).toBe(true);
    expect(error.name).toBe('ConfigError');
  });

  it('never echoes a rejected secret', () => {
    const almost = randomBytes(31).toString('base64');
    const error = configError(() => loadConfig({ ...EXTERNAL, JWT_SECRET: almost }, dir));
    expect(error.message).not.toContain(almost);
    const notBase64 = `${SECRET.slice(0, 30)}!${SECRET.slice(31)}`;
    expect(
      configError(() => loadConfig({ ...EXTERNAL, JWT_SECRET: notBase64 }, dir)).message,
    ).not.toContain(notBase64);
  });

  it('requires JWT_SECRET with DATABASE_URL, and writes nothing', () => {
    const error = configError(() => loadConfig({ DATABASE_URL: EXTERNAL.DATABASE_URL }, dir));
    expect(error.variable).toBe('JWT_SECRET');
    expect(error.message).toMatch(/^JWT_SECRET: required with DATABASE_URL/);
    expect(existsSync(path.join(dir, 'data'))).toBe(false);
    expect(existsSync(path.join(dir, 'data-secrets'))).toBe(false);
  });

  it('validates every documented variable (each has a default that loads)', () => {
    // Every VARIABLES entry must be read: a default that would not parse shows up here.
    expect(() => loadConfig({}, dir)).not.toThrow();
    expect(Object.keys(VARIABLES).sort()).toEqual(
      [
        'DATABASE_POOL_SIZE',
        'DATABASE_URL',
        'DATA_DIR',
        'DISCOVERY_KEY',
        'DISCOVERY_PREVIOUS_KEY',
        'DISCOVERY_PREVIOUS_KEY_UNTIL',
        'DEV_TURN',
        'ENVELOPE_TTL_DAYS',
        'HOST',
        'JANITOR_INTERVAL_MS',
        'JWT_SECRET',
        'JWT_VERIFY_SECRETS',
        'LOG_LEVEL',
        'METRICS_TOKEN',
        'MIGRATE_ON_START',
        'PORT',
        'PROVISIONING_TIMEOUT_MS',
        'QUEUE_MAX_BYTES',
        'QUEUE_MAX_ENVELOPES',
        'RATE_LIMIT_AUTH',
        'RATE_LIMIT_DISCOVERY_ADDRESS',
        'RATE_LIMIT_DISCOVERY_EVALUATE',
        'RATE_LIMIT_DISCOVERY_LOOKUP',
        'RATE_LIMIT_LOGIN',
        'RATE_LIMIT_MESSAGES',
        'RATE_LIMIT_PREKEY_FETCH',
        'RATE_LIMIT_PREKEY_REQUESTER',
        'RATE_LIMIT_PREKEY_TARGET',
        'RATE_LIMIT_REGISTRATION',
        'RATE_LIMIT_TURN',
        'REGISTRATION',
        'SEND_BYTES_PER_HOUR',
        'SECRETS_DIR',
        'TRUST_PROXY',
        'TURN_SECRET',
        'TURN_TTL_SECONDS',
        'TURN_URLS',
        'WS_ACK_TIMEOUT_MS',
        'WS_AUTH_TIMEOUT_MS',
        'WS_DIRECT_WINDOW_MS',
        'WS_IDLE_TIMEOUT_MS',
        'WS_UNAUTHENTICATED_PER_ADDRESS',
        'WS_WINDOW',
        'WS_WINDOW_BYTES',
      ].sort(),
    );
  });
});

describe('TRUST_PROXY', () => {
  const trust = (value: string) => loadConfig({ ...EXTERNAL, TRUST_PROXY: value }, dir).trustProxy;

  it('takes a number of proxies, or their addresses and CIDR ranges', () => {
    expect(trust('false')).toBe(false);
    expect(trust('0')).toBe(false);
    expect(trust('1')).toBe(1);
    expect(trust('2')).toBe(2);
    expect(trust(' 127.0.0.1 , 10.0.0.0/8,::1, fd00::/8 ')).toEqual([
      '127.0.0.1',
      '10.0.0.0/8',
      '::1',
      'fd00::/8',
    ]);
  });

  it('refuses true, saying what to set instead', () => {
    const error = configError(() => loadConfig({ ...EXTERNAL, TRUST_PROXY: 'true' }, dir));
    expect(error.message).toMatch(/X-Forwarded-For/);
    expect(error.message).toMatch(/number of proxies/);
  });
});

describe('REGISTRATION', () => {
  const mode = (env: Record<string, string>) =>
    loadConfig({ ...EXTERNAL, ...env }, dir).registration;

  it('auto: open on loopback without a proxy (local use), invite when reachable from outside', () => {
    expect(mode({})).toBe('open');
    expect(mode({ HOST: 'localhost' })).toBe('open');
    expect(mode({ HOST: '::1' })).toBe('open');
    expect(mode({ HOST: '0.0.0.0' })).toBe('invite');
    expect(mode({ HOST: '192.0.2.10' })).toBe('invite');
    expect(mode({ TRUST_PROXY: '1' })).toBe('invite');
    expect(mode({ REGISTRATION: 'auto', TRUST_PROXY: '127.0.0.1' })).toBe('invite');
  });

  it('an explicit mode wins', () => {
    expect(mode({ HOST: '0.0.0.0', REGISTRATION: 'open' })).toBe('open');
    expect(mode({ REGISTRATION: 'invite' })).toBe('invite');
  });
});

describe('embedded-mode secret', () => {
  it('is generated once in <DATA_DIR>-secrets with mode 0600, then reused', () => {
    const first = loadConfig({}, dir);
    const file = path.join(dir, 'data-secrets', 'jwt_secret');
    expect(existsSync(file)).toBe(true);
    expect(mode(file)).toBe(0o600);
    expect(mode(path.join(dir, 'data-secrets'))).toBe(0o700);
    expect(first.secretsDir).toBe(path.join(dir, 'data-secrets'));
    const stored = readFileSync(file, 'utf8');
    expect(Buffer.from(stored.trim(), 'base64')).toHaveLength(32);
    expect(Buffer.from(first.jwtSecret).equals(Buffer.from(stored.trim(), 'base64'))).toBe(true);

    const second = loadConfig({}, dir);
    expect(Buffer.from(second.jwtSecret).equals(Buffer.from(first.jwtSecret))).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(stored);
  });

  it('differs between data directories', () => {
    const a = loadConfig({ DATA_DIR: 'a' }, dir);
    const b = loadConfig({ DATA_DIR: path.join(dir, 'b') }, dir);
    expect(existsSync(path.join(dir, 'a-secrets', 'jwt_secret'))).toBe(true);
    expect(existsSync(path.join(dir, 'b-secrets', 'jwt_secret'))).toBe(true);
    expect(Buffer.from(a.jwtSecret).equals(Buffer.from(b.jwtSecret))).toBe(false);
  });

  it('tightens the mode of an existing secret file and reuses its value', () => {
    const secrets = path.join(dir, 'data-secrets');
    mkdirSync(secrets, { recursive: true });
    const file = path.join(secrets, 'jwt_secret');
    writeFileSync(file, `${SECRET}\n`);
    chmodSync(file, 0o644);
    const config = loadConfig({}, dir);
    expect(mode(file)).toBe(0o600);
    expect(Buffer.from(config.jwtSecret).toString('base64')).toBe(SECRET);
  });

  it('refuses a stored secret that is too short, naming JWT_SECRET', () => {
    const secrets = path.join(dir, 'data-secrets');
    mkdirSync(secrets, { recursive: true });
    writeFileSync(path.join(secrets, 'jwt_secret'), randomBytes(8).toString('base64'));
    expect(configError(() => loadConfig({}, dir)).variable).toBe('JWT_SECRET');
  });

  it('leaves no key in DATA_DIR: a copy of the data cannot mint tokens', () => {
    const config = loadConfig({ TURN_URLS: 'turn:turn.example.org' }, dir);
    mkdirSync(path.join(dir, 'data', 'postgres'), { recursive: true });
    const keys = [
      Buffer.from(config.jwtSecret).toString('base64'),
      config.turn?.secret ?? 'missing',
    ];
    const files = (readdirSync(path.join(dir, 'data'), { recursive: true }) as string[])
      .map((name) => path.join(dir, 'data', name))
      .filter((file) => statSync(file).isFile());
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const key of keys) expect(text.includes(key), file).toBe(false);
    }
    expect(readFileSync(path.join(dir, 'data-secrets', 'jwt_secret'), 'utf8')).toBe(keys[0]);
  });

  it('moves secrets an older relay kept in DATA_DIR/secrets out of it, and says so', () => {
    const old = path.join(dir, 'data', 'secrets');
    mkdirSync(old, { recursive: true });
    writeFileSync(path.join(old, 'jwt_secret'), SECRET, { mode: 0o644 });
    writeFileSync(path.join(old, 'turn_secret'), TURN_SECRET);
    writeFileSync(path.join(old, 'postgres_password'), 'stays-with-the-database');
    const config = loadConfig({ TURN_URLS: 'turn:turn.example.org' }, dir);
    expect(config.movedSecrets).toEqual(['jwt_secret', 'turn_secret']);
    expect(Buffer.from(config.jwtSecret).toString('base64')).toBe(SECRET);
    expect(config.turn?.secret).toBe(TURN_SECRET);
    expect(existsSync(path.join(old, 'jwt_secret'))).toBe(false);
    expect(existsSync(path.join(old, 'turn_secret'))).toBe(false);
    expect(existsSync(path.join(old, 'postgres_password'))).toBe(true);
    expect(mode(path.join(dir, 'data-secrets', 'jwt_secret'))).toBe(0o600);
    // The next start finds nothing to move.
    expect(loadConfig({}, dir).movedSecrets).toEqual([]);
  });

  it('refuses to choose between two different copies of a secret', () => {
    mkdirSync(path.join(dir, 'data', 'secrets'), { recursive: true });
    mkdirSync(path.join(dir, 'data-secrets'), { recursive: true });
    writeFileSync(path.join(dir, 'data', 'secrets', 'jwt_secret'), SECRET);
    writeFileSync(path.join(dir, 'data-secrets', 'jwt_secret'), randomBytes(32).toString('base64'));
    expect(configError(() => loadConfig({}, dir)).variable).toBe('SECRETS_DIR');
    expect(readFileSync(path.join(dir, 'data', 'secrets', 'jwt_secret'), 'utf8')).toBe(SECRET);
  });

  it('takes SECRETS_DIR, and refuses one inside DATA_DIR', () => {
    const config = loadConfig({ SECRETS_DIR: 'keys' }, dir);
    expect(config.secretsDir).toBe(path.join(dir, 'keys'));
    expect(existsSync(path.join(dir, 'keys', 'jwt_secret'))).toBe(true);
    for (const inside of ['data', 'data/secrets', path.join(dir, 'data', 'x')]) {
      expect(configError(() => loadConfig({ SECRETS_DIR: inside }, dir)).variable).toBe(
        'SECRETS_DIR',
      );
    }
  });
});

describe('discovery key', () => {
  it('is generated once in the secrets directory in embedded mode, with mode 0600', () => {
    const first = loadConfig({}, dir);
    const file = path.join(dir, 'data-secrets', 'discovery_key');
    expect(mode(file)).toBe(0o600);
    expect(first.discovery?.keys.current.version).toBe(1);
    expect(loadConfig({}, dir).discovery).toEqual(first.discovery);
  });

  it('is off with DATABASE_URL and no DISCOVERY_KEY, and writes nothing', () => {
    expect(loadConfig(EXTERNAL, dir).discovery).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('takes a previous key with the end of its grace period, and checks them together', () => {
    const previous = `1:${randomBytes(32).toString('base64')}`;
    const current = `2:${randomBytes(32).toString('base64')}`;
    const until = '2027-01-15T00:00:00.000Z';
    const config = loadConfig(
      {
        ...EXTERNAL,
        DISCOVERY_KEY: current,
        DISCOVERY_PREVIOUS_KEY: previous,
        DISCOVERY_PREVIOUS_KEY_UNTIL: until,
      },
      dir,
    );
    expect(config.discovery?.keys.previous).toMatchObject({ version: 1, until: new Date(until) });
    const noUntil = configError(() =>
      loadConfig({ ...EXTERNAL, DISCOVERY_KEY: current, DISCOVERY_PREVIOUS_KEY: previous }, dir),
    );
    expect(noUntil.variable).toBe('DISCOVERY_PREVIOUS_KEY_UNTIL');
    const newer = configError(() =>
      loadConfig(
        {
          ...EXTERNAL,
          DISCOVERY_KEY: previous,
          DISCOVERY_PREVIOUS_KEY: current,
          DISCOVERY_PREVIOUS_KEY_UNTIL: until,
        },
        dir,
      ),
    );
    expect(newer.variable).toBe('DISCOVERY_PREVIOUS_KEY');
    expect(newer.message).not.toContain(current.slice(2));
  });
});

describe('TURN', () => {
  const URLS = 'turn:turn.example.org:3478?transport=udp';

  it('is off without TURN_URLS, and then generates no secret', () => {
    expect(loadConfig({}, dir).turn).toBeUndefined();
    expect(existsSync(path.join(dir, 'data-secrets', 'turn_secret'))).toBe(false);
    // TURN_SECRET alone, valid, is accepted and unused.
    expect(loadConfig({ ...EXTERNAL, TURN_SECRET }, dir).turn).toBeUndefined();
  });

  it('defaults the credential lifetime to an hour', () => {
    expect(loadConfig({ ...EXTERNAL, TURN_URLS: URLS, TURN_SECRET }, dir).turn).toEqual({
      urls: [URLS],
      secret: TURN_SECRET,
      ttlSeconds: 3600,
    });
    expect(
      loadConfig({ ...EXTERNAL, TURN_URLS: URLS, TURN_SECRET, TURN_TTL_SECONDS: '86400' }, dir).turn
        ?.ttlSeconds,
    ).toBe(86_400);
  });

  it('accepts every URL form RFC 7065 allows', () => {
    for (const url of [
      'turn:turn.example.org',
      'turns:turn.example.org',
      'turn:192.0.2.1:1',
      'turn:[::1]:65535?transport=tcp',
      'turns:[2001:db8::ffff:192.0.2.1]:5349?transport=tcp',
      'turns:turn.example.org?transport=udp',
      'turn:localhost:3478',
    ]) {
      expect(loadConfig({ ...EXTERNAL, TURN_URLS: url, TURN_SECRET }, dir).turn?.urls, url).toEqual(
        [url],
      );
    }
  });

  it('requires TURN_SECRET with TURN_URLS and DATABASE_URL, and writes nothing', () => {
    const error = configError(() => loadConfig({ ...EXTERNAL, TURN_URLS: URLS }, dir));
    expect(error.variable).toBe('TURN_SECRET');
    expect(error.message).toMatch(/^TURN_SECRET: required with TURN_URLS/);
    expect(existsSync(path.join(dir, 'data'))).toBe(false);
    expect(existsSync(path.join(dir, 'data-secrets'))).toBe(false);
  });

  it('never echoes a rejected TURN secret', () => {
    for (const secret of ['s3cr3t-but-too-short', `${'k'.repeat(30)} ${'k'.repeat(30)}`]) {
      const error = configError(() =>
        loadConfig({ ...EXTERNAL, TURN_URLS: URLS, TURN_SECRET: secret }, dir),
      );
      expect(error.variable).toBe('TURN_SECRET');
      expect(error.message).not.toContain(secret.trim().slice(0, 12));
    }
  });

  it('in embedded mode generates the secret once in <DATA_DIR>-secrets (0600) and reuses it', () => {
    const first = loadConfig({ TURN_URLS: URLS }, dir);
    const file = path.join(dir, 'data-secrets', 'turn_secret');
    expect(mode(file)).toBe(0o600);
    const stored = readFileSync(file, 'utf8');
    expect(stored).toMatch(/^[0-9a-f]{64}$/);
    expect(first.turn?.secret).toBe(stored);
    // Independent of the JWT secret generated next to it.
    expect(first.turn?.secret).not.toBe(Buffer.from(first.jwtSecret).toString('hex'));
    expect(loadConfig({ TURN_URLS: URLS }, dir).turn?.secret).toBe(stored);
    expect(readFileSync(file, 'utf8')).toBe(stored);
    // A TURN_SECRET given wins over the stored one and leaves the file alone.
    expect(loadConfig({ TURN_URLS: URLS, TURN_SECRET }, dir).turn?.secret).toBe(TURN_SECRET);
    expect(readFileSync(file, 'utf8')).toBe(stored);
  });

  it('refuses a stored TURN secret that is too short, naming TURN_SECRET', () => {
    const secrets = path.join(dir, 'data-secrets');
    mkdirSync(secrets, { recursive: true });
    writeFileSync(path.join(secrets, 'turn_secret'), 'abc');
    expect(configError(() => loadConfig({ TURN_URLS: URLS }, dir)).variable).toBe('TURN_SECRET');
  });
});

describe('environmentWithDotenv', () => {
  it('returns the environment unchanged without a .env file', () => {
    const env = { PORT: '1234' };
    expect(environmentWithDotenv(env, dir)).toEqual({ PORT: '1234' });
  });

  it('reads .env, and the real environment wins over it', () => {
    writeFileSync(
      path.join(dir, '.env'),
      [
        '# comment',
        'PORT=9000',
        'LOG_LEVEL=debug',
        'REGISTRATION="invite"',
        `JWT_SECRET=${SECRET}`,
      ].join('\n'),
    );
    const env = environmentWithDotenv({ PORT: '8001', HOST: '0.0.0.0' }, dir);
    expect(env).toMatchObject({
      PORT: '8001',
      HOST: '0.0.0.0',
      LOG_LEVEL: 'debug',
      REGISTRATION: 'invite',
      JWT_SECRET: SECRET,
    });
    const config = loadConfig(env, dir);
    expect(config.port).toBe(8001);
    expect(config.logLevel).toBe('debug');
    expect(config.registration).toBe('invite');
    expect(Buffer.from(config.jwtSecret).toString('base64')).toBe(SECRET);
  });

  it('a wrong value in .env is reported like one in the environment', () => {
    writeFileSync(path.join(dir, '.env'), 'PORT=abc\n');
    expect(configError(() => loadConfig(environmentWithDotenv({}, dir), dir)).variable).toBe(
      'PORT',
    );
  });
});

describe('secrets that are plainly not random', () => {
  it.each([
    ['JWT_SECRET', 'A'.repeat(43) + '='],
    ['JWT_SECRET', Buffer.from('changeme'.repeat(4)).toString('base64')],
    ['JWT_SECRET', Buffer.from([...Array(32).keys()].map((i) => i % 8)).toString('base64')],
    ['TURN_SECRET', 'REPLACE-WITH-THE-RELAYS-TURN_SECRET'],
    ['TURN_SECRET', '0123456'.repeat(6)],
  ] as const)('refuses %s=%s, saying how to generate one', (name, value) => {
    const error = configError(() => loadConfig({ ...EXTERNAL, [name]: value }, dir));
    expect(error.variable).toBe(name);
    expect(error.message).toMatch(
      /is not random .*generate one with `openssl rand -(hex|base64) 32`$/,
    );
    // The refused value is never echoed.
    expect(error.message).not.toContain(value);
  });

  it('says how to generate a secret that is too short', () => {
    const error = configError(() =>
      loadConfig({ ...EXTERNAL, JWT_SECRET: randomBytes(16).toString('base64') }, dir),
    );
    expect(error.message).toBe(
      'JWT_SECRET: expected at least 32 bytes, got 16; generate one with `openssl rand -base64 32`',
    );
  });
});

describe('JWT_VERIFY_SECRETS', () => {
  it('reads each listed key', () => {
    const other = [randomBytes(32), randomBytes(48)];
    const config = loadConfig(
      { ...EXTERNAL, JWT_VERIFY_SECRETS: other.map((key) => key.toString('base64')).join(', ') },
      dir,
    );
    expect(config.jwtVerifySecrets).toEqual(other.map((key) => new Uint8Array(key)));
  });

  it('refuses a short key and JWT_SECRET itself', () => {
    expect(
      configError(() =>
        loadConfig({ ...EXTERNAL, JWT_VERIFY_SECRETS: randomBytes(8).toString('base64') }, dir),
      ).variable,
    ).toBe('JWT_VERIFY_SECRETS');
    expect(
      configError(() => loadConfig({ ...EXTERNAL, JWT_VERIFY_SECRETS: SECRET }, dir)).message,
    ).toBe('JWT_VERIFY_SECRETS: holds JWT_SECRET itself; list only the other key of the rotation');
  });
});

describe('DEV_TURN', () => {
  const local = { JWT_SECRET: SECRET };
  it('allows the development coturn only for a relay that serves this machine alone', () => {
    expect(loadConfig(local, dir).devTurn).toEqual({ ttlSeconds: 3600 });
    expect(loadConfig({ ...local, TURN_TTL_SECONDS: '120' }, dir).devTurn).toEqual({
      ttlSeconds: 120,
    });
    for (const production of [
      { HOST: '0.0.0.0' },
      { HOST: '192.0.2.1' },
      { TRUST_PROXY: '1' },
      { DATABASE_URL: EXTERNAL.DATABASE_URL },
      { DEV_TURN: 'off' },
      { TURN_URLS: 'turn:turn.example.org:3478', TURN_SECRET },
    ]) {
      expect(loadConfig({ ...local, ...production }, dir).devTurn, JSON.stringify(production)).toBe(
        undefined,
      );
    }
  });

  it('refuses anything but auto and off', () => {
    expect(configError(() => loadConfig({ ...local, DEV_TURN: 'on' }, dir)).message).toBe(
      'DEV_TURN: expected one of auto, off, got "on"',
    );
  });
});
