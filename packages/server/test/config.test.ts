import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
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
/** External-database mode: no files are touched. */
const EXTERNAL = { DATABASE_URL: 'postgres://relay@db.internal:5432/privcomm', JWT_SECRET: SECRET };

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
    const config = loadConfig({ JWT_SECRET: SECRET }, dir);
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 8000,
      dataDir: path.join(dir, 'data'),
      databaseUrl: undefined,
      databasePoolSize: 10,
      migrateOnStart: true,
      jwtSecret: new Uint8Array(Buffer.from(SECRET, 'base64')),
      registration: 'open',
      logLevel: 'info',
      trustProxy: false,
      envelopeTtlDays: 30,
      metricsToken: undefined,
      rateLimits: {
        registration: { burst: 6, refillSeconds: 30 },
        auth: { burst: 30, refillSeconds: 2 },
        prekeyFetch: { burst: 6, refillSeconds: 600 },
        messages: { burst: 60, refillSeconds: 1 },
      },
      ws: { authTimeoutMs: 5000, idleTimeoutMs: 90_000, ackTimeoutMs: 60_000, window: 32 },
      janitorIntervalMs: 600_000,
      provisioningTimeoutMs: 600_000,
    });
    // A secret from the environment means nothing is written.
    expect(existsSync(path.join(dir, 'data'))).toBe(false);
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
        METRICS_TOKEN: 'scrape-me',
        RATE_LIMIT_REGISTRATION: '1/0.5',
        RATE_LIMIT_AUTH: '1000000/86400',
        RATE_LIMIT_PREKEY_FETCH: '3/60',
        RATE_LIMIT_MESSAGES: '10/2',
        WS_AUTH_TIMEOUT_MS: '100',
        WS_IDLE_TIMEOUT_MS: '3600000',
        WS_ACK_TIMEOUT_MS: '250',
        WS_WINDOW: '1000',
        JANITOR_INTERVAL_MS: '100',
        PROVISIONING_TIMEOUT_MS: '100',
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
      trustProxy: true,
      envelopeTtlDays: 90,
      metricsToken: 'scrape-me',
      rateLimits: {
        registration: { burst: 1, refillSeconds: 0.5 },
        auth: { burst: 1_000_000, refillSeconds: 86_400 },
        prekeyFetch: { burst: 3, refillSeconds: 60 },
        messages: { burst: 10, refillSeconds: 2 },
      },
      ws: { authTimeoutMs: 100, idleTimeoutMs: 3_600_000, ackTimeoutMs: 250, window: 1000 },
      janitorIntervalMs: 100,
      provisioningTimeoutMs: 100,
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
    ['JANITOR_INTERVAL_MS', '1e6'],
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
  });

  it('validates every documented variable (each has a default that loads)', () => {
    // Every VARIABLES entry must be read: a default that would not parse shows up here.
    expect(() => loadConfig({}, dir)).not.toThrow();
    expect(Object.keys(VARIABLES).sort()).toEqual(
      [
        'DATABASE_POOL_SIZE',
        'DATABASE_URL',
        'DATA_DIR',
        'ENVELOPE_TTL_DAYS',
        'HOST',
        'JANITOR_INTERVAL_MS',
        'JWT_SECRET',
        'LOG_LEVEL',
        'METRICS_TOKEN',
        'MIGRATE_ON_START',
        'PORT',
        'PROVISIONING_TIMEOUT_MS',
        'RATE_LIMIT_AUTH',
        'RATE_LIMIT_MESSAGES',
        'RATE_LIMIT_PREKEY_FETCH',
        'RATE_LIMIT_REGISTRATION',
        'REGISTRATION',
        'TRUST_PROXY',
        'WS_ACK_TIMEOUT_MS',
        'WS_AUTH_TIMEOUT_MS',
        'WS_IDLE_TIMEOUT_MS',
        'WS_WINDOW',
      ].sort(),
    );
  });
});

describe('embedded-mode secret', () => {
  it('is generated once in DATA_DIR/secrets with mode 0600, then reused', () => {
    const first = loadConfig({}, dir);
    const file = path.join(dir, 'data', 'secrets', 'jwt_secret');
    expect(existsSync(file)).toBe(true);
    expect(mode(file)).toBe(0o600);
    expect(mode(path.join(dir, 'data', 'secrets'))).toBe(0o700);
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
    expect(existsSync(path.join(dir, 'a', 'secrets', 'jwt_secret'))).toBe(true);
    expect(existsSync(path.join(dir, 'b', 'secrets', 'jwt_secret'))).toBe(true);
    expect(Buffer.from(a.jwtSecret).equals(Buffer.from(b.jwtSecret))).toBe(false);
  });

  it('tightens the mode of an existing secret file and reuses its value', () => {
    const secrets = path.join(dir, 'data', 'secrets');
    mkdirSync(secrets, { recursive: true });
    const file = path.join(secrets, 'jwt_secret');
    writeFileSync(file, `${SECRET}\n`);
    chmodSync(file, 0o644);
    const config = loadConfig({}, dir);
    expect(mode(file)).toBe(0o600);
    expect(Buffer.from(config.jwtSecret).toString('base64')).toBe(SECRET);
  });

  it('refuses a stored secret that is too short, naming JWT_SECRET', () => {
    const secrets = path.join(dir, 'data', 'secrets');
    mkdirSync(secrets, { recursive: true });
    writeFileSync(path.join(secrets, 'jwt_secret'), randomBytes(8).toString('base64'));
    expect(configError(() => loadConfig({}, dir)).variable).toBe('JWT_SECRET');
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
