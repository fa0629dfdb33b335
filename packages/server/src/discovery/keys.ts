import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ristretto255_oprf } from '@noble/curves/ed25519.js';

/**
 * The discovery key: the secret of the relay's OPRF (RFC 9497, ristretto255). Whoever holds it
 * can turn a phone number into its discovery token, so it never enters the database, a dump or
 * a log: it lives in SECRETS_DIR (generated on first start in embedded mode) or in DISCOVERY_KEY.
 *
 * A key is a version and a 32-byte seed, written `<version>:<base64 seed>`; the OPRF key pair is
 * derived from the seed (RFC 9497 DeriveKeyPair, with the version in the key info), so the text
 * form is all an operator has to keep.
 *
 * Rotation keeps the old key as the previous key until a grace time: both evaluate meanwhile, so
 * a client can still find numbers whose owners have not yet published a token under the new key,
 * and every client republishes its own token when it sees the new version.
 */

export interface DiscoveryKey {
  readonly version: number;
  readonly seed: Uint8Array;
}

export interface DiscoveryKeys {
  readonly current: DiscoveryKey;
  /** Evaluates and matches until `until`, then nothing. */
  readonly previous?: DiscoveryKey & { readonly until: Date };
}

/** Which part of the keys is wrong: the current key, the previous one, or its grace end. */
export type DiscoveryKeyPart = 'current' | 'previous' | 'until';

export class DiscoveryKeyError extends Error {
  override readonly name = 'DiscoveryKeyError';
  constructor(
    readonly part: DiscoveryKeyPart,
    message: string,
  ) {
    super(message);
  }
}

const SEED_BYTES = 32;
const MAX_VERSION = 2_147_483_647;

/** File names in SECRETS_DIR. */
export const DISCOVERY_KEY_FILE = 'discovery_key';
export const DISCOVERY_PREVIOUS_KEY_FILE = 'discovery_previous_key';

export const formatDiscoveryKey = (key: DiscoveryKey): string =>
  `${key.version}:${Buffer.from(key.seed).toString('base64')}`;

/** Parses `<version>:<base64 of 32 bytes>`; errors never repeat the value. */
export const parseDiscoveryKey = (
  raw: string,
  part: DiscoveryKeyPart = 'current',
): DiscoveryKey => {
  const match = /^(\d{1,10}):([A-Za-z0-9+/]{43}=)$/.exec(raw.trim());
  const version = Number(match?.[1]);
  if (!match?.[2] || !Number.isInteger(version) || version < 1 || version > MAX_VERSION) {
    throw new DiscoveryKeyError(
      part,
      'expected <version>:<base64 of 32 bytes>, e.g. 1:$(openssl rand -base64 32)',
    );
  }
  return { version, seed: new Uint8Array(Buffer.from(match[2], 'base64')) };
};

export const parseUntil = (raw: string): Date => {
  const until = new Date(raw.trim());
  if (!/^\d{4}-\d{2}-\d{2}T/.test(raw.trim()) || Number.isNaN(until.getTime())) {
    throw new DiscoveryKeyError('until', 'expected an ISO 8601 time such as 2027-01-15T00:00:00Z');
  }
  return until;
};

export const newDiscoveryKey = (version: number): DiscoveryKey => ({
  version,
  seed: new Uint8Array(randomBytes(SEED_BYTES)),
});

/** Both keys from their text forms (environment or files), checked for consistency. */
export const discoveryKeysFrom = (
  current: string,
  previous: string,
  previousUntil: string,
): DiscoveryKeys => {
  if (current === '') {
    throw new DiscoveryKeyError(
      previous === '' ? 'until' : 'previous',
      'set only together with a current key (DISCOVERY_KEY)',
    );
  }
  const key = parseDiscoveryKey(current);
  // Not used without a previous key, but a wrong value is still a mistake worth stopping for.
  const until = previousUntil === '' ? undefined : parseUntil(previousUntil);
  if (previous === '') return { current: key };
  const old = parseDiscoveryKey(previous, 'previous');
  if (old.version >= key.version) {
    throw new DiscoveryKeyError(
      'previous',
      'the previous key must have a lower version than the current key',
    );
  }
  if (!until) throw new DiscoveryKeyError('until', 'required with a previous key');
  return { current: key, previous: { ...old, until } };
};

const writeSecret = (file: string, text: string): void => {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written beside and renamed: a crash never leaves half a key.
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temporary, `${text}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(temporary, file);
};

const readSecret = (file: string): string | undefined => {
  if (!existsSync(file)) return undefined;
  chmodSync(file, 0o600);
  return readFileSync(file, 'utf8');
};

/**
 * The keys kept in SECRETS_DIR (embedded mode): `discovery_key` holds the current key, generated
 * at the first start; `discovery_previous_key` holds the previous key and, on its second line,
 * the end of its grace period.
 */
export const readDiscoveryKeyFiles = (secretsDir: string): DiscoveryKeys => {
  const currentFile = path.join(secretsDir, DISCOVERY_KEY_FILE);
  let current = readSecret(currentFile);
  if (current === undefined) {
    current = formatDiscoveryKey(newDiscoveryKey(1));
    mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
    writeFileSync(currentFile, `${current}\n`, { mode: 0o600, flag: 'wx' });
  }
  const [previous = '', until = ''] = (
    readSecret(path.join(secretsDir, DISCOVERY_PREVIOUS_KEY_FILE)) ?? ''
  )
    .trim()
    .split('\n');
  return discoveryKeysFrom(current, previous, until);
};

/** A new current key; the current one becomes the previous, evaluating until `until`. */
export const rotatedKeys = (keys: DiscoveryKeys, until: Date): DiscoveryKeys => ({
  current: newDiscoveryKey(keys.current.version + 1),
  previous: { ...keys.current, until },
});

/** Rotates the key files in SECRETS_DIR: the previous key is written before the new current. */
export const rotateDiscoveryKeyFiles = (secretsDir: string, until: Date): DiscoveryKeys => {
  const rotated = rotatedKeys(readDiscoveryKeyFiles(secretsDir), until);
  const previous = rotated.previous as DiscoveryKey & { until: Date };
  writeSecret(
    path.join(secretsDir, DISCOVERY_PREVIOUS_KEY_FILE),
    `${formatDiscoveryKey(previous)}\n${previous.until.toISOString()}`,
  );
  writeSecret(path.join(secretsDir, DISCOVERY_KEY_FILE), formatDiscoveryKey(rotated.current));
  return rotated;
};

const KEY_INFO_PREFIX = 'privcomm discovery key v';

/** The OPRF secret scalar of a key. */
export const oprfSecretKey = (key: DiscoveryKey): Uint8Array =>
  ristretto255_oprf.oprf.deriveKeyPair(
    key.seed,
    new TextEncoder().encode(`${KEY_INFO_PREFIX}${key.version}`),
  ).secretKey;
