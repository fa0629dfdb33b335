import { sql } from 'drizzle-orm';
import {
  type AnyPgColumn,
  bigint,
  boolean,
  customType,
  date,
  foreignKey,
  index,
  integer,
  pgSequence,
  pgTable,
  primaryKey,
  smallint,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';

/**
 * The relay's whole schema: public keys, opaque ciphertexts, random ids, hashes of one-time
 * codes, dates, hours, and the expiry times of short-lived credentials; see SECURITY.md. `npm run migration:generate` diffs this file
 * against migrations/ and writes the next migration.
 */

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });

export const accounts = pgTable('accounts', {
  id: uuid('id').primaryKey().defaultRandom(),
  identityKey: bytea('identity_key').notNull(),
  /** Device ids are never reused, so a removed device's tokens can never match a new device. */
  nextDeviceId: integer('next_device_id').notNull().default(2),
  createdOn: date('created_on').notNull().defaultNow(),
});

export const devices = pgTable(
  'devices',
  {
    accountId: uuid('account_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'cascade' }),
    deviceId: integer('device_id').notNull(),
    registrationId: integer('registration_id').notNull(),
    /** Raw Ed25519 public key the device signs auth challenges with (not its identity key). */
    authKey: bytea('auth_key').notNull(),
    signedPreKeyId: integer('signed_prekey_id').notNull(),
    signedPreKey: bytea('signed_prekey').notNull(),
    signedPreKeySignature: bytea('signed_prekey_signature').notNull(),
    kemLastResortKeyId: integer('kem_last_resort_key_id').notNull(),
    kemLastResortKey: bytea('kem_last_resort_key').notNull(),
    kemLastResortSignature: bytea('kem_last_resort_signature').notNull(),
    createdOn: date('created_on').notNull().defaultNow(),
    /** Day granularity on purpose: the relay keeps no finer record of activity. */
    lastSeenOn: date('last_seen_on').notNull().defaultNow(),
    /**
     * The last queue position given to an envelope for this device. Positions count per device,
     * so a dump cannot tell which envelopes of different devices were stored one after the other
     * (a message and its sync copy would otherwise sit next to each other). It starts at a random
     * value so that it does not tell how many envelopes the device ever received.
     */
    queueSeq: bigint('queue_seq', { mode: 'number' })
      .notNull()
      .default(sql`floor(random() * 1e12)::bigint`),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.deviceId] })],
);

const deviceReference = (t: { accountId: AnyPgColumn; deviceId: AnyPgColumn }) =>
  foreignKey({
    columns: [t.accountId, t.deviceId],
    foreignColumns: [devices.accountId, devices.deviceId],
  }).onDelete('cascade');

export const oneTimePreKeys = pgTable(
  'one_time_prekeys',
  {
    accountId: uuid('account_id').notNull(),
    deviceId: integer('device_id').notNull(),
    keyId: integer('key_id').notNull(),
    publicKey: bytea('public_key').notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.deviceId, t.keyId] }), deviceReference(t)],
);

export const oneTimeKemPreKeys = pgTable(
  'one_time_kem_prekeys',
  {
    accountId: uuid('account_id').notNull(),
    deviceId: integer('device_id').notNull(),
    keyId: integer('key_id').notNull(),
    publicKey: bytea('public_key').notNull(),
    signature: bytea('signature').notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.deviceId, t.keyId] }), deviceReference(t)],
);

/**
 * Login challenges are stateless (sealed with a key held in memory, see services/challenges.ts):
 * nothing is written when one is issued. A challenge used for a token leaves only the SHA-256 of
 * its nonce and its expiry rounded up to the minute, no account or device, until it expires, so
 * that each is good for one token across every instance. The table is UNLOGGED (created so by
 * migration 0002; drizzle has no option for it): its rows never reach the write-ahead log.
 */
export const usedChallenges = pgTable(
  'used_challenges',
  {
    nonceHash: bytea('nonce_hash').primaryKey(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('used_challenges_expires_at').on(t.expiresAt)],
);

export const linkTokens = pgTable(
  'link_tokens',
  {
    /** SHA-256 of the token: a database dump cannot be used to link a device. */
    tokenHash: bytea('token_hash').primaryKey(),
    accountId: uuid('account_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('link_tokens_expires_at').on(t.expiresAt)],
);

export const inviteCodes = pgTable('invite_codes', {
  /** SHA-256 of the code, for the same reason as link tokens. */
  codeHash: bytea('code_hash').primaryKey(),
  usesLeft: integer('uses_left').notNull(),
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  createdOn: date('created_on').notNull().defaultNow(),
});

export const envelopes = pgTable(
  'envelopes',
  {
    /**
     * Position in its device's queue (from devices.queue_seq), not comparable across devices.
     * Acknowledgements delete by (account, device, seq), so the uuid below needs no index.
     */
    seq: bigint('seq', { mode: 'number' }).notNull(),
    /** Handed to the recipient, who de-duplicates redeliveries by it. */
    id: uuid('id').notNull().defaultRandom(),
    accountId: uuid('account_id').notNull(),
    deviceId: integer('device_id').notNull(),
    type: smallint('type').notNull(),
    content: bytea('content').notNull(),
    urgent: boolean('urgent').notNull().default(false),
    /** Truncated to the hour: enough to expire, too coarse to correlate sender and recipient. */
    storedHour: timestamp('stored_hour', { withTimezone: true })
      .notNull()
      .default(sql`date_trunc('hour', now())`),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [
    deviceReference(t),
    primaryKey({ name: 'envelopes_queue', columns: [t.accountId, t.deviceId, t.seq] }),
    // BRIN: expiry times grow with insertion order, so a block-range index is tiny and costs
    // almost nothing per insert, unlike a B-tree on a table with constant churn.
    index('envelopes_expires_at').using('brin', t.expiresAt),
  ],
);

/** Orders WebSocket connections across instances, so that the newest one per device wins. */
export const connectionSeq = pgSequence('connection_seq');

/**
 * How much each device has queued: envelopes and ciphertext bytes. Triggers on `envelopes` keep
 * it (migration 0002), so every insert and delete path counts, whoever wrote it; the send path
 * reads it inside its insert transaction, where the row lock makes the queue caps exact across
 * relay instances without counting a queue on every send.
 */
export const queueUsage = pgTable(
  'queue_usage',
  {
    accountId: uuid('account_id').notNull(),
    deviceId: integer('device_id').notNull(),
    envelopes: integer('envelopes').notNull().default(0),
    bytes: bigint('bytes', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.deviceId] }), deviceReference(t)],
);

/**
 * Discovery tokens (docs/protocol.md, "Discovery"): the OPRF output of the phone number of each
 * account that chose to be found, under the key version it names. Without the discovery key,
 * which is never in the database, a token cannot be tested against any number. Nothing about
 * lookups is stored. Not unique: the relay does not verify numbers, so two accounts may claim one.
 */
export const discoveryTokens = pgTable(
  'discovery_tokens',
  {
    accountId: uuid('account_id')
      .primaryKey()
      .references(() => accounts.id, { onDelete: 'cascade' }),
    token: bytea('token').notNull(),
    keyVersion: integer('key_version').notNull(),
  },
  (t) => [index('discovery_tokens_token').on(t.token)],
);
