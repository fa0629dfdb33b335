/**
 * The ClientStore on SQLite, written once for every platform over a small async driver: the CLI
 * gives it better-sqlite3, the Android app expo-sqlite. The core holds the schema, its
 * migrations and every statement; a driver only runs SQL.
 */

import { isAccountId, isDeviceId, type AccountId, type DeviceId } from '@privcomm/wire';
import { parseGroupLog } from './groups/group-codec.ts';
import { currentState } from './groups/group-log.ts';
import {
  MAX_HELD_ENVELOPES,
  type ClientStore,
  type Contact,
  type HeldEnvelope,
  type MessageChange,
  type MessageStatus,
  type OutboxEntry,
  type OwnSenderKey,
  type Profile,
  type RecipientStatus,
  type StoredGroup,
  type StoredMessage,
} from './store.ts';

/** A value SQLite binds (no booleans: the store writes 0 and 1). */
export type SqlValue = string | number | null | Uint8Array;

/**
 * What the store needs from a SQLite connection. Results are rows as plain objects keyed by
 * column name; blobs may come back as any Uint8Array (a Buffer in Node).
 */
export interface SqlDriver {
  /** Runs one or more statements without parameters. */
  exec(sql: string): Promise<void>;
  run(sql: string, params?: readonly SqlValue[]): Promise<{ changes: number }>;
  /** The first row, or undefined. */
  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  /**
   * Runs `work` in one write transaction (BEGIN IMMEDIATE, so that another process waits
   * rather than failing halfway): committed when it resolves, rolled back when it throws.
   */
  transaction<T>(work: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A driver's `transaction` built from its `exec`, for drivers with nothing better. */
export const immediateTransaction = async <T>(
  exec: (sql: string) => Promise<void>,
  work: () => Promise<T>,
): Promise<T> => {
  await exec('BEGIN IMMEDIATE');
  let result: T;
  try {
    result = await work();
  } catch (error) {
    await exec('ROLLBACK');
    throw error;
  }
  await exec('COMMIT');
  return result;
};

/**
 * The database is not a sound store of this version: another SQLite database, a newer format,
 * or damaged (an id that is not one). Thrown without changing anything.
 */
export class StoreFormatError extends Error {
  override readonly name = 'StoreFormatError';
}

/** "pcli" in ASCII ("privcomm client"): marks a database as this store. */
export const SQL_STORE_APPLICATION_ID = 0x70636c69;

/**
 * The schema, as migrations: SQL_STORE_MIGRATIONS[n] takes a database from version n to n + 1 (version 0
 * is an empty database). Append only: a database written by an older version must open.
 */
export const SQL_STORE_MIGRATIONS: readonly string[] = [
  // 1: the first format (the CLI's client.sqlite until the store moved into the core).
  `CREATE TABLE profile (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     relay_url TEXT NOT NULL,
     account_id TEXT NOT NULL,
     device_id INTEGER NOT NULL,
     name TEXT,
     keys_rotated_at INTEGER NOT NULL
   );
   CREATE TABLE contacts (
     account_id TEXT NOT NULL UNIQUE,
     name TEXT NOT NULL,
     expire_seconds INTEGER NOT NULL
   );
   CREATE TABLE messages (
     conversation TEXT NOT NULL,
     direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
     id TEXT NOT NULL,
     sender_device_id INTEGER,
     text TEXT NOT NULL,
     sent_at INTEGER NOT NULL,
     received_at INTEGER NOT NULL,
     status TEXT NOT NULL,
     expires_at INTEGER,
     deleted INTEGER,
     UNIQUE (conversation, direction, id)
   );
   CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
   CREATE TABLE processed (
     envelope_id TEXT PRIMARY KEY,
     at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX processed_at ON processed (at);
   CREATE TABLE outbox (
     id TEXT NOT NULL UNIQUE,
     recipient TEXT NOT NULL,
     content BLOB NOT NULL,
     online INTEGER NOT NULL,
     urgent INTEGER NOT NULL,
     created_at INTEGER NOT NULL
   );`,
  // 2: copies to this account's other devices wait in the outbox until a random time.
  `ALTER TABLE outbox ADD COLUMN not_before INTEGER;`,
  // 3: the core's own small records by key (ClientStore.value: settings, blocked accounts).
  `CREATE TABLE client_values (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL
   ) WITHOUT ROWID;`,
  // 4: groups. The log (every change this device keeps, groups/group-log.ts) as JSON; title,
  // version and members of the current state beside it for lookups. A group message's sender.
  `ALTER TABLE messages ADD COLUMN sender TEXT;
   CREATE TABLE groups (
     group_id TEXT PRIMARY KEY,
     title TEXT,
     version INTEGER NOT NULL,
     log TEXT NOT NULL,
     expire_seconds INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE group_members (
     group_id TEXT NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
     account_id TEXT NOT NULL,
     admin INTEGER NOT NULL,
     since INTEGER NOT NULL,
     PRIMARY KEY (group_id, account_id)
   ) WITHOUT ROWID;
   CREATE TABLE own_sender_keys (
     group_id TEXT PRIMARY KEY,
     distribution_id TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE sender_key_recipients (
     distribution_id TEXT NOT NULL,
     device TEXT NOT NULL,
     PRIMARY KEY (distribution_id, device)
   ) WITHOUT ROWID;
   ALTER TABLE outbox ADD COLUMN group_id TEXT;
   CREATE TABLE held_envelopes (
     envelope_id TEXT PRIMARY KEY,
     sender TEXT NOT NULL,
     sender_device_id INTEGER NOT NULL,
     distribution_id TEXT NOT NULL,
     type INTEGER NOT NULL,
     content BLOB NOT NULL,
     received_at INTEGER NOT NULL
   );`,
  // 5: a group message's recipients with their receipts (groups/group-receipts.ts), as JSON.
  `ALTER TABLE messages ADD COLUMN recipients TEXT;`,
];

/** The format this code writes. */
export const SQL_STORE_VERSION = SQL_STORE_MIGRATIONS.length;

/**
 * Ids read back, branded by wire's guards. Only checked ids are ever written, so one that fails
 * here means the database was damaged or edited.
 */
const storedAccountId = (value: string): AccountId => {
  if (!isAccountId(value))
    throw new StoreFormatError('the client store holds an invalid account id');
  return value;
};
const storedDeviceId = (value: number): DeviceId => {
  if (!isDeviceId(value)) throw new StoreFormatError('the client store holds an invalid device id');
  return value;
};

interface ProfileRow {
  relay_url: string;
  account_id: string;
  device_id: number;
  name: string | null;
  keys_rotated_at: number;
}

interface ContactRow {
  account_id: string;
  name: string;
  expire_seconds: number;
}

interface MessageRow {
  conversation: string;
  direction: 'in' | 'out';
  id: string;
  sender_device_id: number | null;
  text: string;
  sent_at: number;
  received_at: number;
  status: MessageStatus;
  expires_at: number | null;
  deleted: number | null;
  sender: string | null;
  recipients: string | null;
}

interface GroupRow {
  group_id: string;
  log: string;
  expire_seconds: number;
}

interface OwnSenderKeyRow {
  group_id: string;
  distribution_id: string;
  created_at: number;
}

interface HeldEnvelopeRow {
  envelope_id: string;
  sender: string;
  sender_device_id: number;
  distribution_id: string;
  type: number;
  content: Uint8Array;
  received_at: number;
}

interface OutboxRow {
  id: string;
  recipient: string;
  content: Uint8Array;
  online: number;
  urgent: number;
  created_at: number;
  not_before: number | null;
  group_id: string | null;
}

const toContact = (row: ContactRow): Contact => ({
  accountId: storedAccountId(row.account_id),
  name: row.name,
  expireSeconds: row.expire_seconds,
});

const toMessage = (row: MessageRow): StoredMessage => ({
  id: row.id,
  conversation: row.conversation,
  direction: row.direction,
  ...(row.sender_device_id === null ? {} : { senderDeviceId: row.sender_device_id }),
  ...(row.sender === null ? {} : { sender: storedAccountId(row.sender) }),
  text: row.text,
  sentAt: row.sent_at,
  receivedAt: row.received_at,
  status: row.status,
  ...(row.expires_at === null ? {} : { expiresAt: row.expires_at }),
  ...(row.deleted === null ? {} : { deleted: row.deleted === 1 }),
  ...(row.recipients === null ? {} : { recipients: storedRecipients(row.recipients) }),
});

const RECIPIENT_STATUSES: readonly string[] = ['failed', 'sent', 'delivered', 'read'];

const storedRecipients = (json: string): Record<string, RecipientStatus> => {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    value = undefined;
  }
  const valid =
    typeof value === 'object' &&
    value !== null &&
    Object.entries(value).every(
      ([member, status]) => isAccountId(member) && RECIPIENT_STATUSES.includes(status as string),
    );
  if (!valid) throw new StoreFormatError('the client store holds damaged message recipients');
  return value as Record<string, RecipientStatus>;
};

const toGroup = (row: GroupRow): StoredGroup => {
  let log;
  try {
    log = parseGroupLog(JSON.parse(row.log));
  } catch {
    throw new StoreFormatError('the client store holds a damaged group');
  }
  return { groupId: row.group_id, log, expireSeconds: row.expire_seconds };
};

const toOwnSenderKey = (row: OwnSenderKeyRow): OwnSenderKey => ({
  groupId: row.group_id,
  distributionId: row.distribution_id,
  createdAt: row.created_at,
});

const toHeldEnvelope = (row: HeldEnvelopeRow): HeldEnvelope => ({
  envelopeId: row.envelope_id,
  sender: storedAccountId(row.sender),
  senderDeviceId: storedDeviceId(row.sender_device_id),
  distributionId: row.distribution_id,
  type: row.type,
  content: Uint8Array.from(row.content),
  receivedAt: row.received_at,
});

const toOutboxEntry = (row: OutboxRow): OutboxEntry => ({
  id: row.id,
  recipient: storedAccountId(row.recipient),
  // A copy as a plain Uint8Array, whatever the driver returns (a Buffer in Node).
  content: Uint8Array.from(row.content),
  online: row.online === 1,
  urgent: row.urgent === 1,
  createdAt: row.created_at,
  ...(row.not_before === null ? {} : { notBefore: row.not_before }),
  ...(row.group_id === null ? {} : { group: row.group_id }),
});

/** The columns a message update may set, and how each value is written. */
const UPDATABLE: Record<keyof MessageChange, (value: unknown) => [string, SqlValue]> = {
  status: (value) => ['status', value as string],
  text: (value) => ['text', value as string],
  deleted: (value) => ['deleted', value === undefined ? null : value ? 1 : 0],
  expiresAt: (value) => ['expires_at', (value as number | undefined) ?? null],
  recipients: (value) => ['recipients', value === undefined ? null : JSON.stringify(value)],
};

/**
 * ClientStore on SQLite: profile, contacts, messages, outbox, processed envelope ids. Same
 * semantics as MemoryStore (the store contract runs both). Operations run one at a time, in
 * call order, each write in one transaction, so a multi-statement method is never interleaved
 * with another on the same connection. Deleted rows are overwritten (secure_delete), so that a
 * disappeared message does not linger in free pages.
 */
export class SqlStore implements ClientStore {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly db: SqlDriver) {}

  /**
   * Creates the schema in an empty database, or brings an older one up to date; refuses another
   * database or a newer format with StoreFormatError, without writing anything. On failure the
   * driver is left open (the caller opened it).
   */
  static async open(db: SqlDriver): Promise<SqlStore> {
    await db.exec('PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;');
    const version = (await db.get<{ user_version: number }>('PRAGMA user_version'))?.user_version;
    const applicationId = (await db.get<{ application_id: number }>('PRAGMA application_id'))
      ?.application_id;
    if (version === 0 || version === undefined) {
      const tables = await db.get<{ n: number }>('SELECT count(*) AS n FROM sqlite_master');
      if ((tables?.n ?? 0) > 0 || (applicationId ?? 0) !== 0)
        throw new StoreFormatError('it is a SQLite database, but not a privcomm client store');
    } else if (applicationId !== SQL_STORE_APPLICATION_ID) {
      throw new StoreFormatError('it is a SQLite database, but not a privcomm client store');
    } else if (version > SQL_STORE_VERSION) {
      throw new StoreFormatError(
        `its format version ${version} is newer than this privcomm reads (${SQL_STORE_VERSION}): update privcomm`,
      );
    }
    const from = version ?? 0;
    if (from < SQL_STORE_VERSION) {
      // One transaction for every step: a failure leaves the database as it was.
      await db.transaction(async () => {
        for (const migration of SQL_STORE_MIGRATIONS.slice(from)) await db.exec(migration);
        await db.exec(
          `PRAGMA application_id = ${SQL_STORE_APPLICATION_ID}; PRAGMA user_version = ${SQL_STORE_VERSION};`,
        );
      });
    }
    return new SqlStore(db);
  }

  /** Runs `work` after every operation before it; in one transaction when it writes. */
  private serial<T>(work: () => Promise<T>, write: boolean): Promise<T> {
    const next = this.queue.then(() => (write ? this.db.transaction(work) : work()));
    this.queue = next.catch(() => undefined);
    return next;
  }
  private read<T>(work: () => Promise<T>): Promise<T> {
    return this.serial(work, false);
  }
  private write<T>(work: () => Promise<T>): Promise<T> {
    return this.serial(work, true);
  }

  profile(): Promise<Profile | undefined> {
    return this.read(async () => {
      const row = await this.db.get<ProfileRow>('SELECT * FROM profile WHERE id = 1');
      if (!row) return undefined;
      return {
        relayUrl: row.relay_url,
        accountId: storedAccountId(row.account_id),
        deviceId: storedDeviceId(row.device_id),
        ...(row.name === null ? {} : { name: row.name }),
        keysRotatedAt: row.keys_rotated_at,
      };
    });
  }

  saveProfile(profile: Profile): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `INSERT INTO profile (id, relay_url, account_id, device_id, name, keys_rotated_at)
         VALUES (1, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET relay_url = excluded.relay_url,
           account_id = excluded.account_id, device_id = excluded.device_id,
           name = excluded.name, keys_rotated_at = excluded.keys_rotated_at`,
        [
          profile.relayUrl,
          profile.accountId,
          profile.deviceId,
          profile.name ?? null,
          profile.keysRotatedAt,
        ],
      );
    });
  }

  contacts(): Promise<Contact[]> {
    return this.read(async () =>
      (await this.db.all<ContactRow>('SELECT * FROM contacts ORDER BY rowid')).map(toContact),
    );
  }

  contact(accountId: string): Promise<Contact | undefined> {
    return this.read(async () => {
      const row = await this.db.get<ContactRow>('SELECT * FROM contacts WHERE account_id = ?', [
        accountId,
      ]);
      return row && toContact(row);
    });
  }

  saveContact(contact: Contact): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `INSERT INTO contacts (account_id, name, expire_seconds) VALUES (?, ?, ?)
         ON CONFLICT (account_id) DO UPDATE SET name = excluded.name,
           expire_seconds = excluded.expire_seconds`,
        [contact.accountId, contact.name, contact.expireSeconds],
      );
    });
  }

  addMessage(message: StoredMessage): Promise<boolean> {
    return this.write(async () => {
      const result = await this.db.run(
        `INSERT INTO messages (conversation, direction, id, sender_device_id, text, sent_at,
           received_at, status, expires_at, deleted, sender, recipients)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (conversation, direction, id) DO NOTHING`,
        [
          message.conversation,
          message.direction,
          message.id,
          message.senderDeviceId ?? null,
          message.text,
          message.sentAt,
          message.receivedAt,
          message.status,
          message.expiresAt ?? null,
          message.deleted === undefined ? null : message.deleted ? 1 : 0,
          message.sender ?? null,
          message.recipients === undefined ? null : JSON.stringify(message.recipients),
        ],
      );
      return result.changes === 1;
    });
  }

  message(conversation: string, id: string): Promise<StoredMessage | undefined> {
    return this.read(async () => {
      const row = await this.db.get<MessageRow>(
        `SELECT * FROM messages WHERE conversation = ? AND id = ?
         ORDER BY CASE direction WHEN 'out' THEN 0 ELSE 1 END LIMIT 1`,
        [conversation, id],
      );
      return row && toMessage(row);
    });
  }

  updateMessage(conversation: string, id: string, change: MessageChange): Promise<void> {
    return this.write(async () => {
      const assignments = Object.entries(change)
        .filter(([field]) => field in UPDATABLE)
        .map(([field, value]) => UPDATABLE[field as keyof MessageChange](value));
      if (assignments.length === 0) return;
      await this.db.run(
        `UPDATE messages SET ${assignments.map(([column]) => `${column} = ?`).join(', ')}
         WHERE conversation = ? AND id = ?`,
        [...assignments.map(([, value]) => value), conversation, id],
      );
    });
  }

  messages(conversation: string): Promise<StoredMessage[]> {
    return this.read(async () =>
      (
        await this.db.all<MessageRow>(
          'SELECT * FROM messages WHERE conversation = ? ORDER BY sent_at, received_at, rowid',
          [conversation],
        )
      ).map(toMessage),
    );
  }

  removeExpired(now: number): Promise<StoredMessage[]> {
    return this.write(async () => {
      const rows = await this.db.all<MessageRow & { r: number }>(
        `SELECT rowid AS r, * FROM messages
         WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY rowid`,
        [now],
      );
      for (const row of rows) await this.db.run('DELETE FROM messages WHERE rowid = ?', [row.r]);
      return rows.map(({ r: _r, ...row }) => toMessage(row));
    });
  }

  isProcessed(envelopeId: string): Promise<boolean> {
    return this.read(
      async () =>
        (await this.db.get('SELECT 1 AS one FROM processed WHERE envelope_id = ?', [
          envelopeId,
        ])) !== undefined,
    );
  }

  markProcessed(envelopeId: string, at: number, forgetBefore: number): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `INSERT INTO processed (envelope_id, at) VALUES (?, ?)
         ON CONFLICT (envelope_id) DO UPDATE SET at = excluded.at`,
        [envelopeId, at],
      );
      await this.db.run('DELETE FROM processed WHERE at < ?', [forgetBefore]);
    });
  }

  outbox(): Promise<OutboxEntry[]> {
    return this.read(async () =>
      (await this.db.all<OutboxRow>('SELECT * FROM outbox ORDER BY created_at, rowid')).map(
        toOutboxEntry,
      ),
    );
  }

  addOutbox(entry: OutboxEntry): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `INSERT INTO outbox (id, recipient, content, online, urgent, created_at, not_before,
           group_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET recipient = excluded.recipient,
           content = excluded.content, online = excluded.online, urgent = excluded.urgent,
           created_at = excluded.created_at, not_before = excluded.not_before,
           group_id = excluded.group_id`,
        [
          entry.id,
          entry.recipient,
          entry.content,
          entry.online ? 1 : 0,
          entry.urgent ? 1 : 0,
          entry.createdAt,
          entry.notBefore ?? null,
          entry.group ?? null,
        ],
      );
    });
  }

  removeOutbox(id: string): Promise<void> {
    return this.write(async () => {
      await this.db.run('DELETE FROM outbox WHERE id = ?', [id]);
    });
  }

  conversationIds(): Promise<string[]> {
    return this.read(async () =>
      (
        await this.db.all<{ conversation: string }>('SELECT DISTINCT conversation FROM messages')
      ).map((row) => row.conversation),
    );
  }

  deleteConversation(conversation: string): Promise<void> {
    return this.write(async () => {
      await this.db.run('DELETE FROM messages WHERE conversation = ?', [conversation]);
    });
  }

  value(key: string): Promise<string | undefined> {
    return this.read(
      async () =>
        (
          await this.db.get<{ value: string }>('SELECT value FROM client_values WHERE key = ?', [
            key,
          ])
        )?.value,
    );
  }

  saveValue(key: string, value: string): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `INSERT INTO client_values (key, value) VALUES (?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [key, value],
      );
    });
  }

  groups(): Promise<StoredGroup[]> {
    return this.read(async () =>
      (await this.db.all<GroupRow>('SELECT * FROM groups ORDER BY group_id')).map(toGroup),
    );
  }

  group(groupId: string): Promise<StoredGroup | undefined> {
    return this.read(async () => {
      const row = await this.db.get<GroupRow>('SELECT * FROM groups WHERE group_id = ?', [groupId]);
      return row && toGroup(row);
    });
  }

  saveGroup(group: StoredGroup): Promise<void> {
    return this.write(async () => {
      const state = currentState(group.log);
      await this.db.run(
        `INSERT INTO groups (group_id, title, version, log, expire_seconds) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (group_id) DO UPDATE SET title = excluded.title, version = excluded.version,
           log = excluded.log, expire_seconds = excluded.expire_seconds`,
        [
          group.groupId,
          state?.title ?? null,
          state?.version ?? 0,
          JSON.stringify(group.log),
          group.expireSeconds,
        ],
      );
      await this.db.run('DELETE FROM group_members WHERE group_id = ?', [group.groupId]);
      for (const m of state?.members ?? []) {
        await this.db.run(
          'INSERT INTO group_members (group_id, account_id, admin, since) VALUES (?, ?, ?, ?)',
          [group.groupId, m.accountId, m.admin ? 1 : 0, m.since],
        );
      }
    });
  }

  ownSenderKey(groupId: string): Promise<OwnSenderKey | undefined> {
    return this.read(async () => {
      const row = await this.db.get<OwnSenderKeyRow>(
        'SELECT * FROM own_sender_keys WHERE group_id = ?',
        [groupId],
      );
      return row && toOwnSenderKey(row);
    });
  }

  ownSenderKeyByDistribution(distributionId: string): Promise<OwnSenderKey | undefined> {
    return this.read(async () => {
      const row = await this.db.get<OwnSenderKeyRow>(
        'SELECT * FROM own_sender_keys WHERE distribution_id = ?',
        [distributionId],
      );
      return row && toOwnSenderKey(row);
    });
  }

  saveOwnSenderKey(key: OwnSenderKey): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `DELETE FROM sender_key_recipients WHERE distribution_id IN
           (SELECT distribution_id FROM own_sender_keys WHERE group_id = ? AND distribution_id <> ?)`,
        [key.groupId, key.distributionId],
      );
      await this.db.run(
        `INSERT INTO own_sender_keys (group_id, distribution_id, created_at) VALUES (?, ?, ?)
         ON CONFLICT (group_id) DO UPDATE SET distribution_id = excluded.distribution_id,
           created_at = excluded.created_at`,
        [key.groupId, key.distributionId, key.createdAt],
      );
    });
  }

  senderKeyRecipients(distributionId: string): Promise<string[]> {
    return this.read(async () =>
      (
        await this.db.all<{ device: string }>(
          'SELECT device FROM sender_key_recipients WHERE distribution_id = ? ORDER BY device',
          [distributionId],
        )
      ).map((row) => row.device),
    );
  }

  addSenderKeyRecipients(distributionId: string, devices: readonly string[]): Promise<void> {
    return this.write(async () => {
      for (const device of devices) {
        await this.db.run(
          `INSERT INTO sender_key_recipients (distribution_id, device) VALUES (?, ?)
           ON CONFLICT DO NOTHING`,
          [distributionId, device],
        );
      }
    });
  }

  removeSenderKeyRecipients(distributionId: string, devices: readonly string[]): Promise<void> {
    return this.write(async () => {
      for (const device of devices) {
        await this.db.run(
          'DELETE FROM sender_key_recipients WHERE distribution_id = ? AND device = ?',
          [distributionId, device],
        );
      }
    });
  }

  holdEnvelope(envelope: HeldEnvelope): Promise<void> {
    return this.write(async () => {
      await this.db.run(
        `INSERT INTO held_envelopes (envelope_id, sender, sender_device_id, distribution_id,
           type, content, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (envelope_id) DO NOTHING`,
        [
          envelope.envelopeId,
          envelope.sender,
          envelope.senderDeviceId,
          envelope.distributionId,
          envelope.type,
          envelope.content,
          envelope.receivedAt,
        ],
      );
      await this.db.run(
        `DELETE FROM held_envelopes WHERE rowid NOT IN
           (SELECT rowid FROM held_envelopes ORDER BY received_at DESC, rowid DESC LIMIT ?)`,
        [MAX_HELD_ENVELOPES],
      );
    });
  }

  heldEnvelopes(): Promise<HeldEnvelope[]> {
    return this.read(async () =>
      (
        await this.db.all<HeldEnvelopeRow>(
          'SELECT * FROM held_envelopes ORDER BY received_at, rowid',
        )
      ).map(toHeldEnvelope),
    );
  }

  releaseEnvelope(envelopeId: string): Promise<void> {
    return this.write(async () => {
      await this.db.run('DELETE FROM held_envelopes WHERE envelope_id = ?', [envelopeId]);
    });
  }

  wipe(): Promise<void> {
    return this.serial(async () => {
      // Every table this store made, whatever the migrations added: the rows go, the schema and
      // its version stay, so the store is afterwards as a new one.
      await this.db.transaction(async () => {
        // Children and parents go in one transaction: the foreign keys are checked at its end.
        await this.db.exec('PRAGMA defer_foreign_keys = ON');
        const tables = await this.db.all<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        );
        for (const { name } of tables) await this.db.run(`DELETE FROM "${name}"`);
      });
      // secure_delete has overwritten the rows; VACUUM (outside any transaction) rewrites the
      // file without the freed pages, so neither its size nor its free list tells what was there.
      await this.db.exec('VACUUM');
    }, false);
  }

  /** Closes the connection once the operations already asked for are done. */
  async close(): Promise<void> {
    await this.queue;
    await this.db.close();
  }
}
