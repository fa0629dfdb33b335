/**
 * The relay's benchmark accounts, created once per run straight in its database, as ejabberd's
 * users are created in its `users` table: registration is set-up, not a scenario, and going
 * through POST /v1/accounts for the 19,000 accounts of scenario 4 cost minutes of the run (and
 * again for every scenario's 400). Every scenario then logs in (challenge, token, socket) as a
 * client does. Each device's Ed25519 authentication key is kept in the account file, so that the
 * load processes can sign its login challenges.
 */
import {
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
  randomInt,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';

export interface BenchAccount {
  readonly accountId: string;
  readonly deviceId: number;
  readonly registrationId: number;
  /** The Ed25519 authentication key as JWK fields (base64url): private `d`, public `x`. */
  readonly d: string;
  readonly x: string;
}

/**
 * The device's private key. From JWK, never from PKCS#8: OpenSSL 3's DER decoder took 7 ms per
 * key here at a load of 18, the JWK import under 1 ms.
 */
export const authKeyOf = (account: BenchAccount): KeyObject =>
  createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: account.d, x: account.x },
    format: 'jwk',
  });

/** Rows per INSERT: each device row carries a 1,569-byte last-resort KEM key. */
const CHUNK = 2_000;

/**
 * Creates `count` accounts, each with its primary device (public keys of the right shapes, as
 * test/support/client.ts makes them), and writes them to `file` for the load processes.
 */
export const createRelayAccounts = async (
  databaseUrl: string,
  count: number,
  file: string,
  progress: (step: string) => void = () => {},
): Promise<void> => {
  const accounts: BenchAccount[] = Array.from({ length: count }, (_, i) => {
    // A line every 2,000 keys: the orchestrator kills a process silent for 15 s.
    if (i > 0 && i % 2000 === 0) progress(`${i} keys made`);
    // The keys' 32 bytes come from their DER exports, not JWK: a JWK export of a generated key
    // can deadlock Node 20 (src/services/at-rest-share.ts), which is how this process used to
    // hang while making its keys (seen with gdb).
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    return {
      accountId: randomUUID(),
      deviceId: 1,
      registrationId: randomInt(1, 16381),
      d: seed.toString('base64url'),
      x: raw.toString('base64url'),
    };
  });
  progress('keys made');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    for (let start = 0; start < count; start += CHUNK) {
      progress(`inserting from ${start}`);
      const chunk = accounts.slice(start, start + CHUNK);
      const ids = chunk.map((account) => account.accountId);
      const keys = (prefix: number, bytes: number): Buffer[] =>
        chunk.map(() => Buffer.concat([Buffer.from([prefix]), randomBytes(bytes)]));
      const signatures = (): Buffer[] => chunk.map(() => randomBytes(64));
      await client.query(
        'INSERT INTO accounts (id, identity_key) SELECT * FROM unnest($1::uuid[], $2::bytea[])',
        [ids, keys(5, 32)],
      );
      await client.query(
        `INSERT INTO devices (account_id, device_id, registration_id, auth_key, signed_prekey_id,
           signed_prekey, signed_prekey_signature, kem_last_resort_key_id, kem_last_resort_key,
           kem_last_resort_signature)
         SELECT a, 1, r, k, 1, s, ss, 1000, kk, ks
         FROM unnest($1::uuid[], $2::int[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[],
           $7::bytea[]) AS t(a, r, k, s, ss, kk, ks)`,
        [
          ids,
          chunk.map((account) => account.registrationId),
          chunk.map((account) => Buffer.from(account.x, 'base64url')),
          keys(5, 32),
          signatures(),
          keys(8, 1568),
          signatures(),
        ],
      );
    }
  } finally {
    await client.end();
  }
  writeFileSync(file, JSON.stringify(accounts));
};

export const readRelayAccounts = (file: string): BenchAccount[] =>
  JSON.parse(readFileSync(file, 'utf8')) as BenchAccount[];
