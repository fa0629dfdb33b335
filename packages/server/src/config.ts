import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { isIP, isIPv6 } from 'node:net';
import { parse as parseDotenv } from 'dotenv';
import {
  MAX_DISCOVERY_EVALUATIONS,
  MAX_DISCOVERY_LOOKUPS,
  MAX_CONTENT_BYTES,
  MAX_DEVICES_PER_ACCOUNT,
  MAX_TURN_TTL_SECONDS,
  MIN_TURN_TTL_SECONDS,
  TURN_URL_PATTERN,
} from '@privcomm/wire';
import {
  DiscoveryKeyError,
  discoveryKeysFrom,
  readDiscoveryKeyFiles,
  type DiscoveryKeys,
} from './discovery/keys.ts';

/**
 * Relay configuration, read from the environment (and an optional `.env` in the working
 * directory, whose values never override the real environment). Every variable is documented in
 * docs/configuration.md; a test keeps that page and VARIABLES below in sync.
 */

export type RegistrationMode = 'open' | 'invite';

/**
 * Which peers may tell the relay the client's address (X-Forwarded-For): none, the nearest N
 * hops, or peers at these addresses or CIDR ranges. Never "anyone": the left-most entries of
 * X-Forwarded-For are whatever the client wrote.
 */
export type TrustProxy = false | number | readonly string[];

export interface RateLimit {
  /** Bucket size: how many requests may come at once. */
  readonly burst: number;
  /** Seconds for one token to come back. */
  readonly refillSeconds: number;
}

/** The TURN server whose credentials the relay hands out (coturn `use-auth-secret`). */
export interface TurnConfig {
  readonly urls: readonly string[];
  /** coturn's `static-auth-secret`, used as is (its bytes are the HMAC key). */
  readonly secret: string;
  readonly ttlSeconds: number;
}

/** Phone-number discovery: the OPRF keys (never in the database) and its quotas. */
export interface DiscoveryConfig {
  readonly keys: DiscoveryKeys;
  readonly rateLimits: {
    readonly evaluate: RateLimit;
    readonly lookup: RateLimit;
    readonly address: RateLimit;
  };
}

export interface RelayConfig {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** Where generated secrets live (embedded mode): never inside dataDir. */
  readonly secretsDir: string;
  /** Secrets found in DATA_DIR/secrets by this load and moved to secretsDir (file names). */
  readonly movedSecrets: readonly string[];
  /** Absent means: run the embedded PostgreSQL in dataDir. */
  readonly databaseUrl: string | undefined;
  readonly databasePoolSize: number;
  readonly migrateOnStart: boolean;
  readonly jwtSecret: Uint8Array;
  /**
   * Keys that still verify device tokens and login challenges but never sign: the previous or the
   * next JWT_SECRET while it is being rotated across instances (docs/operations.md).
   */
  readonly jwtVerifySecrets: readonly Uint8Array[];
  readonly registration: RegistrationMode;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly trustProxy: TrustProxy;
  readonly envelopeTtlDays: number;
  /** Caps on one device's queue, exact across instances (checked in the insert transaction). */
  readonly queue: { readonly maxEnvelopes: number; readonly maxBytes: number };
  /** Ciphertext bytes one account may have stored per hour (a token bucket of this size). */
  readonly sendBytesPerHour: number;
  readonly metricsToken: string | undefined;
  readonly rateLimits: {
    readonly registration: RateLimit;
    readonly auth: RateLimit;
    readonly prekeyFetch: RateLimit;
    readonly prekeyRequester: RateLimit;
    readonly prekeyTarget: RateLimit;
    readonly messages: RateLimit;
    readonly turn: RateLimit;
    readonly login: RateLimit;
  };
  readonly ws: {
    readonly authTimeoutMs: number;
    readonly idleTimeoutMs: number;
    readonly ackTimeoutMs: number;
    readonly window: number;
    /** Bytes of stored content in flight per socket: the window's other bound. */
    readonly windowBytes: number;
    /** Deliver first: how long to wait for acknowledgements before writing (0: always write). */
    readonly directWindowMs: number;
    /** Sockets per client address that have not authenticated (and provisioning sockets). */
    readonly unauthenticatedPerAddress: number;
  };
  readonly janitorIntervalMs: number;
  /** A provisioning socket closes with 4408 after this long. */
  readonly provisioningTimeoutMs: number;
  /** Absent when TURN_URLS is unset: GET /v1/turn then answers 404 TURN_NOT_CONFIGURED. */
  readonly turn: TurnConfig | undefined;
  /** Absent with DATABASE_URL and no DISCOVERY_KEY: the discovery routes answer 404. */
  readonly discovery: DiscoveryConfig | undefined;
  /**
   * Present when `npm start` may run a development coturn on loopback (see dev-turn.ts): only for
   * a relay that serves this machine alone (loopback HOST, no proxy, embedded database), with
   * TURN_URLS unset and DEV_TURN=auto. Anything reachable from outside never runs one.
   */
  readonly devTurn: { readonly ttlSeconds: number } | undefined;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Each variable the relay reads, with its default and what it means (rendered into the docs). */
export const VARIABLES = {
  HOST: { default: '127.0.0.1', doc: 'Address to listen on. Use 0.0.0.0 in a container.' },
  PORT: { default: '8000', doc: 'TCP port of the HTTP and WebSocket API.' },
  DATA_DIR: {
    default: './data',
    doc: 'Where the embedded PostgreSQL lives (embedded mode only). Holds no key: back it up as data.',
  },
  SECRETS_DIR: {
    default: '',
    doc: 'Where generated secrets live (embedded mode). Unset: beside DATA_DIR, named `<DATA_DIR>-secrets`. Never inside DATA_DIR.',
  },
  DATABASE_URL: {
    default: '',
    doc: 'postgres:// URL of an existing PostgreSQL (15 or newer). Unset: embedded PostgreSQL.',
  },
  DATABASE_POOL_SIZE: { default: '10', doc: 'Connections per relay instance (1-100).' },
  MIGRATE_ON_START: {
    default: 'true',
    doc: 'Apply pending migrations at start. Set false and run `npm run migrate` yourself.',
  },
  JWT_SECRET: {
    default: '',
    doc: 'base64 of at least 32 random bytes; signs device tokens. Generated in embedded mode; required with DATABASE_URL, and the same on every instance.',
  },
  JWT_VERIFY_SECRETS: {
    default: '',
    doc: 'Comma-separated base64 keys that still verify device tokens and login challenges but never sign: the old or the new JWT_SECRET during a rotation without downtime (docs/operations.md).',
  },
  REGISTRATION: {
    default: 'auto',
    doc: '`open`, `invite` (a code from `npm run admin -- invite create` is required), or `auto`: open on a loopback HOST without TRUST_PROXY (local use), invite otherwise.',
  },
  LOG_LEVEL: { default: 'info', doc: 'fatal, error, warn, info, debug, trace or silent.' },
  TRUST_PROXY: {
    default: 'false',
    doc: 'Behind a reverse proxy or tunnel: the number of proxies in front of the relay (usually 1), or their addresses/CIDR ranges, comma-separated. Rate limits then see the client address (never logged). `true` is refused.',
  },
  ENVELOPE_TTL_DAYS: { default: '30', doc: 'Days an undelivered envelope is kept (1-90).' },
  QUEUE_MAX_ENVELOPES: {
    default: '10000',
    doc: 'Envelopes one device may have queued; more are refused with 429 QUEUE_FULL.',
  },
  QUEUE_MAX_BYTES: {
    default: '67108864',
    doc: 'Ciphertext bytes one device may have queued (64 MiB); more are refused with 429 QUEUE_FULL.',
  },
  SEND_BYTES_PER_HOUR: {
    default: '33554432',
    doc: 'Bytes one account may send per hour, all its devices together (32 MiB): what a single send stores, what a multi-recipient upload uploads; 429 RATE_LIMITED beyond.',
  },
  METRICS_TOKEN: {
    default: '',
    doc: 'If set, /metrics requires `Authorization: Bearer <token>`.',
  },
  RATE_LIMIT_REGISTRATION: {
    default: '6/30',
    doc: 'Account registrations, device links and provisioning sockets per client address: burst/seconds per token.',
  },
  RATE_LIMIT_AUTH: {
    default: '30/2',
    doc: 'Provisioning messages and identity lookups per requesting device (two buckets): burst/seconds.',
  },
  RATE_LIMIT_LOGIN: {
    default: '100/0.1',
    doc: 'Login challenges, token requests and logins on the message socket by signature (one bucket) per client address, never per device: burst/seconds.',
  },
  RATE_LIMIT_PREKEY_FETCH: {
    default: '6/600',
    doc: 'Bundle fetches per requesting device and target device: burst/seconds.',
  },
  RATE_LIMIT_PREKEY_REQUESTER: {
    default: '200/18',
    doc: 'Device bundles fetched per requesting account, and separately per client address: burst/seconds.',
  },
  RATE_LIMIT_PREKEY_TARGET: {
    default: '10/360',
    doc: 'One-time prekeys handed out per target device: burst/seconds. Beyond it, bundles carry no one-time keys (the last-resort key), so sessions still start.',
  },
  RATE_LIMIT_MESSAGES: {
    default: '60/1',
    doc: 'Send requests per sending device and recipient account: burst/seconds.',
  },
  RATE_LIMIT_TURN: {
    default: '6/600',
    doc: 'TURN credentials per account, all its devices together: burst/seconds. Keep in step with coturn quotas.',
  },
  DISCOVERY_KEY: {
    default: '',
    doc: 'The OPRF key of phone-number discovery: `<version>:<base64 of 32 random bytes>`, e.g. `1:$(openssl rand -base64 32)`. Generated in SECRETS_DIR in embedded mode; with DATABASE_URL, unset turns discovery off, and every instance needs the same value. Never in the database. Rotate with `npm run admin -- discovery rotate-key`.',
  },
  DISCOVERY_PREVIOUS_KEY: {
    default: '',
    doc: 'During a key rotation (with DATABASE_URL): the key before DISCOVERY_KEY, which keeps evaluating and matching until DISCOVERY_PREVIOUS_KEY_UNTIL while clients publish their tokens again.',
  },
  DISCOVERY_PREVIOUS_KEY_UNTIL: {
    default: '',
    doc: 'ISO 8601 time at which DISCOVERY_PREVIOUS_KEY stops evaluating and matching.',
  },
  RATE_LIMIT_DISCOVERY_EVALUATE: {
    default: '1000/60',
    doc: 'Phone numbers evaluated (blinded elements) per account, all its devices together: burst/seconds. The burst must hold one batch (100).',
  },
  RATE_LIMIT_DISCOVERY_LOOKUP: {
    default: '2000/30',
    doc: 'Discovery tokens looked up per account: burst/seconds. The burst must hold one batch (200).',
  },
  RATE_LIMIT_DISCOVERY_ADDRESS: {
    default: '5000/10',
    doc: 'Numbers evaluated and tokens looked up per client address, whatever the account: burst/seconds. The burst must hold one batch (200).',
  },
  WS_AUTH_TIMEOUT_MS: { default: '5000', doc: 'A socket must authenticate within this time.' },
  WS_IDLE_TIMEOUT_MS: {
    default: '90000',
    doc: 'A socket that sends nothing for this long is closed (clients ping every 30 s).',
  },
  WS_ACK_TIMEOUT_MS: {
    default: '60000',
    doc: 'An envelope unacknowledged this long marks a slow consumer; its socket is closed.',
  },
  WS_WINDOW: {
    default: '128',
    doc: 'Stored envelopes in flight per socket, unacknowledged (1-1000): how fast a device that comes back drains its queue.',
  },
  WS_WINDOW_BYTES: {
    default: '1048576',
    doc: 'Ciphertext bytes of stored envelopes in flight per socket (1 MiB; 1024-67108864): no more are read for the socket until answers free room, so memory per socket stays bounded whatever the envelopes weigh (one is always let through).',
  },
  WS_DIRECT_WINDOW_MS: {
    default: '150',
    doc: 'A message for a device connected to this instance and caught up is delivered before it is written; acknowledged within this time, it is never written (0-1000; 0: always write first).',
  },
  WS_UNAUTHENTICATED_PER_ADDRESS: {
    default: '50',
    doc: 'Open sockets per client address that have not authenticated, provisioning sockets included (1-100000).',
  },
  JANITOR_INTERVAL_MS: {
    default: '600000',
    doc: 'How often expired envelopes, challenges and tokens are removed.',
  },
  PROVISIONING_TIMEOUT_MS: {
    default: '600000',
    doc: 'A provisioning socket (device linking) is closed with 4408 after this long.',
  },
  TURN_URLS: {
    default: '',
    doc: 'Comma-separated turn:/turns: URLs handed to clients for calls. Unset: no TURN (GET /v1/turn answers 404).',
  },
  TURN_SECRET: {
    default: '',
    doc: "coturn's static-auth-secret (32-256 printable characters). Required with TURN_URLS; generated in embedded mode.",
  },
  TURN_TTL_SECONDS: {
    default: '3600',
    doc: 'Lifetime of issued TURN credentials in seconds (60-86400).',
  },
  DEV_TURN: {
    default: 'auto',
    doc: '`auto`: a relay for this machine only (loopback HOST, no TRUST_PROXY, embedded database) without TURN_URLS starts a development coturn on loopback if `turnserver` is installed. `off`: never.',
  },
} as const satisfies Record<string, { default: string; doc: string }>;

export type VariableName = keyof typeof VARIABLES;

const get = (env: Env, name: VariableName): string => {
  const value = env[name];
  return value === undefined || value.trim() === '' ? VARIABLES[name].default : value.trim();
};

const integer = (env: Env, name: VariableName, min: number, max: number): number => {
  const raw = get(env, name);
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected an integer, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
};

const boolean = (env: Env, name: VariableName): boolean => {
  const raw = get(env, name).toLowerCase();
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
};

const oneOf = <T extends string>(env: Env, name: VariableName, allowed: readonly T[]): T => {
  const raw = get(env, name);
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
};

const rateLimit = (env: Env, name: VariableName): RateLimit => {
  const raw = get(env, name);
  const match = /^(\d+)\/(\d+(?:\.\d+)?)$/.exec(raw);
  if (!match) throw new ConfigError(name, `expected burst/seconds such as 6/30, got "${raw}"`);
  const burst = Number(match[1]);
  const refillSeconds = Number(match[2]);
  if (burst < 1 || burst > 1_000_000 || refillSeconds <= 0 || refillSeconds > 86_400) {
    throw new ConfigError(name, `burst must be 1-1000000 and seconds 0-86400, got "${raw}"`);
  }
  return { burst, refillSeconds };
};

/** An IPv4/IPv6 address, or one with a /prefix (CIDR). */
const isAddressOrRange = (entry: string): boolean => {
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
};

const trustProxy = (env: Env): TrustProxy => {
  const raw = get(env, 'TRUST_PROXY');
  const lower = raw.toLowerCase();
  if (lower === 'false' || lower === '0') return false;
  if (lower === 'true') {
    throw new ConfigError(
      'TRUST_PROXY',
      'true would take the client address from X-Forwarded-For entries the client writes itself; set the number of proxies in front of the relay (usually 1), or their addresses, e.g. 127.0.0.1 or 10.0.0.0/8',
    );
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 10) throw new ConfigError('TRUST_PROXY', `expected 1-10 proxies, got ${hops}`);
    return hops;
  }
  const entries = raw.split(',').map((entry) => entry.trim());
  const bad = entries.find((entry) => !isAddressOrRange(entry));
  if (bad !== undefined) {
    throw new ConfigError(
      'TRUST_PROXY',
      `"${bad}" is not an address or CIDR range; expected false, a number of proxies such as 1, or addresses such as 127.0.0.1,10.0.0.0/8`,
    );
  }
  return entries;
};

const isLoopbackHost = (host: string): boolean =>
  host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);

/**
 * `auto` keeps the quick start open (a relay on loopback with no proxy in front is reachable from
 * this machine only) and makes anything reachable from outside invitation-only: open registration
 * on a public relay lets anyone create accounts and spend the relay's disk.
 */
const registration = (env: Env, host: string, proxy: TrustProxy): RegistrationMode => {
  const mode = oneOf(env, 'REGISTRATION', ['auto', 'open', 'invite'] as const);
  if (mode !== 'auto') return mode;
  return isLoopbackHost(host) && proxy === false ? 'open' : 'invite';
};

const databaseUrl = (env: Env): string | undefined => {
  const raw = get(env, 'DATABASE_URL');
  if (raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('DATABASE_URL', 'not a URL; expected postgres://user@host:port/database');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError('DATABASE_URL', `expected a postgres:// URL, got ${url.protocol}//`);
  }
  return raw;
};

/**
 * A key with fewer distinct values than this is a placeholder or a pattern, not random: 32 random
 * bytes have fewer than 16 distinct values, or 32 random hex digits fewer than 8, with probability
 * far below 2^-40.
 */
const MIN_DISTINCT = { bytes: 16, text: 8 } as const;

/** Refuses a secret of the right length that is plainly not random ("AAAA…", "changeme" repeated). */
const refuseWeak = (name: VariableName, value: Uint8Array | string): void => {
  const distinct = new Set<unknown>(value as Iterable<unknown>).size;
  const placeholder = typeof value === 'string' && /REPLACE|CHANGE.?ME|SECRET/i.test(value);
  const minimum = typeof value === 'string' ? MIN_DISTINCT.text : MIN_DISTINCT.bytes;
  if (distinct < minimum || placeholder) {
    throw new ConfigError(
      name,
      `is not random (a placeholder or a repeated pattern); generate one with \`openssl rand -${name === 'TURN_SECRET' ? 'hex' : 'base64'} 32\``,
    );
  }
};

const decodeSecret = (name: VariableName, raw: string): Uint8Array => {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(raw)) throw new ConfigError(name, 'expected base64');
  refuseWeak(name, raw);
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.length < 32) {
    throw new ConfigError(
      name,
      `expected at least 32 bytes, got ${bytes.length}; generate one with \`openssl rand -base64 32\``,
    );
  }
  refuseWeak(name, bytes);
  return new Uint8Array(bytes);
};

/**
 * The file of a generated secret in the secrets directory (mode 0700), created once with mode
 * 0600; a directory the relay cannot write is a configuration error that says what to do.
 */
const generatedSecret = (secretsDir: string, name: string, generate: () => string): string => {
  const file = path.join(secretsDir, name);
  try {
    if (!existsSync(file)) {
      mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
      writeFileSync(file, generate(), { mode: 0o600, flag: 'wx' });
    }
    chmodSync(file, 0o600);
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'error';
    throw new ConfigError(
      'SECRETS_DIR',
      `${secretsDir} cannot be written (${code}): give the relay's user write access to it, or set SECRETS_DIR (or the secret itself) to something it may write`,
    );
  }
  return file;
};

/**
 * A secret from the environment, or in embedded mode one generated once and kept in the
 * secrets directory (outside DATA_DIR, so a backup of the data holds no key) with mode 0600. With an external database every instance must share the same
 * secret, so a missing one is an error rather than something to invent.
 */
const secret = (
  env: Env,
  name: VariableName,
  secretsDir: string,
  embedded: boolean,
): Uint8Array => {
  const raw = get(env, name);
  if (raw !== '') return decodeSecret(name, raw);
  if (!embedded) {
    throw new ConfigError(
      name,
      'required with DATABASE_URL; generate one with `openssl rand -base64 32` and give every instance the same value',
    );
  }
  const file = generatedSecret(secretsDir, name.toLowerCase(), () =>
    randomBytes(32).toString('base64'),
  );
  return decodeSecret(name, readFileSync(file, 'utf8').trim());
};

/** JWT_VERIFY_SECRETS: each entry a key like JWT_SECRET, none equal to it. */
const verifySecrets = (env: Env, signing: Uint8Array): Uint8Array[] => {
  const raw = get(env, 'JWT_VERIFY_SECRETS');
  if (raw === '') return [];
  return raw.split(',').map((entry) => {
    const key = decodeSecret('JWT_VERIFY_SECRETS', entry.trim());
    if (Buffer.from(key).equals(Buffer.from(signing))) {
      throw new ConfigError(
        'JWT_VERIFY_SECRETS',
        'holds JWT_SECRET itself; list only the other key of the rotation',
      );
    }
    return key;
  });
};

/**
 * A secret kept as given: coturn uses the bytes of its `static-auth-secret` as the HMAC key, so the
 * relay must too. Printable ASCII without spaces (it goes into turnserver.conf as is).
 */
const checkTurnSecret = (raw: string): string => {
  if (!/^[\x21-\x7e]{32,256}$/.test(raw)) {
    // The length only: a rejected secret is never echoed.
    throw new ConfigError(
      'TURN_SECRET',
      `expected 32-256 printable ASCII characters without spaces, got ${raw.length} characters`,
    );
  }
  refuseWeak('TURN_SECRET', raw);
  return raw;
};

/** Like `secret` above, but kept as text, and generated as hex so it pastes anywhere. */
const turnSecret = (env: Env, secretsDir: string, embedded: boolean): string => {
  const raw = get(env, 'TURN_SECRET');
  if (raw !== '') return checkTurnSecret(raw);
  if (!embedded) {
    throw new ConfigError(
      'TURN_SECRET',
      'required with TURN_URLS and DATABASE_URL; generate one with `openssl rand -hex 32`, give every instance the same value, and set it as static-auth-secret in turnserver.conf',
    );
  }
  const file = generatedSecret(secretsDir, 'turn_secret', () => randomBytes(32).toString('hex'));
  return checkTurnSecret(readFileSync(file, 'utf8').trim());
};

/** One `turn:`/`turns:` URL as RFC 7065 writes it; see TURN_URL_PATTERN. */
const turnUrl = (raw: string): string => {
  const match = new RegExp(TURN_URL_PATTERN).exec(raw);
  const problem = (why: string) =>
    new ConfigError('TURN_URLS', `"${raw}" ${why}; expected turn:host[:port][?transport=udp|tcp]`);
  if (!match) throw problem('is not a TURN URL');
  const host = match[2] ?? '';
  if (host.startsWith('[') && !isIPv6(host.slice(1, -1))) throw problem('has an invalid IPv6 host');
  if (match[3] !== undefined) {
    const port = Number(match[3]);
    if (port < 1 || port > 65535 || match[3].startsWith('0')) throw problem('has an invalid port');
  }
  return raw;
};

/** The TURN section: absent without TURN_URLS; TTL and a given secret are validated anyway. */
const turn = (env: Env, secretsDir: string, embedded: boolean): TurnConfig | undefined => {
  const ttlSeconds = integer(env, 'TURN_TTL_SECONDS', MIN_TURN_TTL_SECONDS, MAX_TURN_TTL_SECONDS);
  const rawUrls = get(env, 'TURN_URLS');
  if (rawUrls === '') {
    // Not used, but a wrong value is still a mistake worth stopping for.
    const secretValue = get(env, 'TURN_SECRET');
    if (secretValue !== '') checkTurnSecret(secretValue);
    return undefined;
  }
  const urls = rawUrls.split(',').map((url) => url.trim());
  if (urls.some((url) => url === '')) {
    throw new ConfigError('TURN_URLS', 'an entry is empty; separate URLs with single commas');
  }
  if (new Set(urls).size !== urls.length) {
    throw new ConfigError('TURN_URLS', 'a URL appears twice');
  }
  return { urls: urls.map(turnUrl), secret: turnSecret(env, secretsDir, embedded), ttlSeconds };
};

/** A rate limit whose bucket holds at least one batch of `batch` (else a full batch waits forever). */
const batchRateLimit = (env: Env, name: VariableName, batch: number): RateLimit => {
  const limit = rateLimit(env, name);
  if (limit.burst < batch) {
    throw new ConfigError(name, `the burst must be at least ${batch}, one full batch`);
  }
  return limit;
};

const DISCOVERY_VARIABLES = {
  current: 'DISCOVERY_KEY',
  previous: 'DISCOVERY_PREVIOUS_KEY',
  until: 'DISCOVERY_PREVIOUS_KEY_UNTIL',
} as const;

/**
 * The discovery key from the environment, or in embedded mode from SECRETS_DIR (generated at the
 * first start). With DATABASE_URL and no DISCOVERY_KEY, discovery is off: inventing a key per
 * instance would give each instance different tokens.
 */
const discovery = (
  env: Env,
  secretsDir: string,
  embedded: boolean,
): DiscoveryConfig | undefined => {
  const rateLimits = {
    evaluate: batchRateLimit(env, 'RATE_LIMIT_DISCOVERY_EVALUATE', MAX_DISCOVERY_EVALUATIONS),
    lookup: batchRateLimit(env, 'RATE_LIMIT_DISCOVERY_LOOKUP', MAX_DISCOVERY_LOOKUPS),
    address: batchRateLimit(env, 'RATE_LIMIT_DISCOVERY_ADDRESS', MAX_DISCOVERY_LOOKUPS),
  };
  const current = get(env, 'DISCOVERY_KEY');
  const previous = get(env, 'DISCOVERY_PREVIOUS_KEY');
  const until = get(env, 'DISCOVERY_PREVIOUS_KEY_UNTIL');
  if (current === '' && previous === '' && until === '' && !embedded) return undefined;
  let keys: DiscoveryKeys;
  try {
    keys =
      current === '' && embedded && previous === '' && until === ''
        ? readDiscoveryKeyFiles(secretsDir)
        : discoveryKeysFrom(current, previous, until);
  } catch (error) {
    if (!(error instanceof DiscoveryKeyError)) throw error;
    // Which variable or file: the message never repeats a key.
    const source =
      current === '' && previous === '' && until === ''
        ? `SECRETS_DIR (${secretsDir})`
        : DISCOVERY_VARIABLES[error.part];
    throw new ConfigError(source, error.message);
  }
  return { keys, rateLimits };
};

/** The secrets the relay generates; older versions kept them in DATA_DIR/secrets. */
const GENERATED_SECRETS = ['jwt_secret', 'turn_secret'] as const;

const isInside = (child: string, parent: string): boolean => {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
};

/** SECRETS_DIR, or by default DATA_DIR's sibling `<DATA_DIR>-secrets`; never inside DATA_DIR. */
const secretsDirectory = (env: Env, cwd: string, dataDir: string): string => {
  const raw = get(env, 'SECRETS_DIR');
  const dir = raw === '' ? `${dataDir}-secrets` : path.resolve(cwd, raw);
  if (isInside(dir, dataDir)) {
    throw new ConfigError(
      'SECRETS_DIR',
      'must not be inside DATA_DIR: a copy of DATA_DIR would then hold the key that signs device tokens',
    );
  }
  return dir;
};

/**
 * Moves secrets an older relay generated in DATA_DIR/secrets to the secrets directory, so that a
 * backup of DATA_DIR no longer holds them. Returns the names moved. The database password stays:
 * it belongs to the database files beside it and opens nothing a copy of them does not.
 */
const moveSecretsOutOfDataDir = (dataDir: string, secretsDir: string): string[] => {
  const moved: string[] = [];
  for (const name of GENERATED_SECRETS) {
    const from = path.join(dataDir, 'secrets', name);
    if (!existsSync(from)) continue;
    const to = path.join(secretsDir, name);
    if (existsSync(to)) {
      if (readFileSync(to, 'utf8').trim() !== readFileSync(from, 'utf8').trim()) {
        throw new ConfigError(
          'SECRETS_DIR',
          `${from} and ${to} both exist and differ: keep the one in use (usually ${from}) in ${to} and delete the other`,
        );
      }
      unlinkSync(from);
    } else {
      mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
      try {
        renameSync(from, to);
      } catch {
        // Another file system: copy, then remove the original.
        copyFileSync(from, to);
        unlinkSync(from);
      }
      chmodSync(to, 0o600);
    }
    moved.push(name);
  }
  return moved;
};

/** Reads `.env` from `cwd` if present; the process environment wins over it. */
export const environmentWithDotenv = (env: Env, cwd: string): Env => {
  const file = path.join(cwd, '.env');
  if (!existsSync(file)) return env;
  return { ...parseDotenv(readFileSync(file)), ...env };
};

/** Validates the whole environment. Throws ConfigError naming the first wrong variable. */
export const loadConfig = (env: Env, cwd: string = process.cwd()): RelayConfig => {
  const dataDir = path.resolve(cwd, get(env, 'DATA_DIR'));
  const url = databaseUrl(env);
  const secretsDir = secretsDirectory(env, cwd, dataDir);
  const movedSecrets = url === undefined ? moveSecretsOutOfDataDir(dataDir, secretsDir) : [];
  const host = get(env, 'HOST');
  if (!/^[0-9a-zA-Z.:-]+$/.test(host)) throw new ConfigError('HOST', `invalid address "${host}"`);
  const metricsToken = get(env, 'METRICS_TOKEN');
  const proxy = trustProxy(env);
  const jwtSecret = secret(env, 'JWT_SECRET', secretsDir, url === undefined);
  const turnConfig = turn(env, secretsDir, url === undefined);
  const devTurnMode = oneOf(env, 'DEV_TURN', ['auto', 'off'] as const);
  const servesThisMachineOnly = isLoopbackHost(host) && proxy === false && url === undefined;
  return {
    host,
    port: integer(env, 'PORT', 0, 65535),
    dataDir,
    secretsDir,
    movedSecrets,
    databaseUrl: url,
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 1, 100),
    migrateOnStart: boolean(env, 'MIGRATE_ON_START'),
    jwtSecret,
    jwtVerifySecrets: verifySecrets(env, jwtSecret),
    registration: registration(env, host, proxy),
    logLevel: oneOf(env, 'LOG_LEVEL', [
      'fatal',
      'error',
      'warn',
      'info',
      'debug',
      'trace',
      'silent',
    ] as const),
    trustProxy: proxy,
    envelopeTtlDays: integer(env, 'ENVELOPE_TTL_DAYS', 1, 90),
    // A queue must hold at least one largest envelope, and a budget one full send to six devices.
    queue: {
      maxEnvelopes: integer(env, 'QUEUE_MAX_ENVELOPES', 1, 1_000_000),
      maxBytes: integer(env, 'QUEUE_MAX_BYTES', MAX_CONTENT_BYTES, 2 ** 40),
    },
    sendBytesPerHour: integer(
      env,
      'SEND_BYTES_PER_HOUR',
      MAX_DEVICES_PER_ACCOUNT * MAX_CONTENT_BYTES,
      2 ** 40,
    ),
    metricsToken: metricsToken === '' ? undefined : metricsToken,
    rateLimits: {
      registration: rateLimit(env, 'RATE_LIMIT_REGISTRATION'),
      auth: rateLimit(env, 'RATE_LIMIT_AUTH'),
      prekeyFetch: rateLimit(env, 'RATE_LIMIT_PREKEY_FETCH'),
      prekeyRequester: rateLimit(env, 'RATE_LIMIT_PREKEY_REQUESTER'),
      prekeyTarget: rateLimit(env, 'RATE_LIMIT_PREKEY_TARGET'),
      messages: rateLimit(env, 'RATE_LIMIT_MESSAGES'),
      turn: rateLimit(env, 'RATE_LIMIT_TURN'),
      login: rateLimit(env, 'RATE_LIMIT_LOGIN'),
    },
    ws: {
      authTimeoutMs: integer(env, 'WS_AUTH_TIMEOUT_MS', 100, 60_000),
      idleTimeoutMs: integer(env, 'WS_IDLE_TIMEOUT_MS', 1_000, 3_600_000),
      ackTimeoutMs: integer(env, 'WS_ACK_TIMEOUT_MS', 100, 3_600_000),
      window: integer(env, 'WS_WINDOW', 1, 1000),
      windowBytes: integer(env, 'WS_WINDOW_BYTES', 1024, 64 * 1024 * 1024),
      directWindowMs: integer(env, 'WS_DIRECT_WINDOW_MS', 0, 1000),
      unauthenticatedPerAddress: integer(env, 'WS_UNAUTHENTICATED_PER_ADDRESS', 1, 100_000),
    },
    janitorIntervalMs: integer(env, 'JANITOR_INTERVAL_MS', 100, 86_400_000),
    provisioningTimeoutMs: integer(env, 'PROVISIONING_TIMEOUT_MS', 100, 3_600_000),
    turn: turnConfig,
    discovery: discovery(env, secretsDir, url === undefined),
    devTurn:
      devTurnMode === 'auto' && servesThisMachineOnly && turnConfig === undefined
        ? {
            ttlSeconds: integer(
              env,
              'TURN_TTL_SECONDS',
              MIN_TURN_TTL_SECONDS,
              MAX_TURN_TTL_SECONDS,
            ),
          }
        : undefined,
  };
};
