import {
  isAccountId,
  isDeviceId,
  type AccountId,
  type ClientStore,
  type Contact,
  type DeviceId,
  type MessageStatus,
  type OutboxEntry,
  type Profile,
  type StoredMessage,
} from '@privcomm/client';

/**
 * Ids read back from this store, branded by wire's guards. Only checked ids are ever written, so
 * one that fails here means the database was damaged.
 */
const storedAccountId = (value: string): AccountId => {
  if (!isAccountId(value)) throw new Error('the client store holds an invalid account id');
  return value;
};
const storedDeviceId = (value: number): DeviceId => {
  if (!isDeviceId(value)) throw new Error('the client store holds an invalid device id');
  return value;
};

/** A value SQLite binds: expo-sqlite's SQLiteBindValue minus booleans. */
export type SqlValue = string | number | null | Uint8Array;

/**
 * The few calls the store makes, in expo-sqlite's shape (`SQLiteDatabase` satisfies it as it
 * is). Tests pass a better-sqlite3 adapter, so the same SQL runs on a real SQLite in Node.
 */
export interface SqlDatabase {
  execAsync(source: string): Promise<void>;
  runAsync(source: string, ...params: SqlValue[]): Promise<{ changes: number }>;
  getAllAsync<T>(source: string, ...params: SqlValue[]): Promise<T[]>;
  getFirstAsync<T>(source: string, ...params: SqlValue[]): Promise<T | null>;
}

/**
 * The core's own small records (ClientStore.value: settings, blocked accounts). Added after
 * version 1 without changing it: created if missing, so a file made before it gains it.
 */
const VALUES_TABLE =
  'CREATE TABLE IF NOT EXISTS client_values (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;';

/** "pmob" in ASCII: marks the file as this store. */
export const APP_STORE_APPLICATION_ID = 0x706d6f62;
export const APP_STORE_VERSION = 1;

const SCHEMA = `
  CREATE TABLE profile (
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
  CREATE TABLE processed (envelope_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
  CREATE INDEX processed_at ON processed (at);
  CREATE TABLE outbox (
    id TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    content BLOB NOT NULL,
    online INTEGER NOT NULL,
    urgent INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
`;

/** The database file is not this store (another database, or a newer version of it). */
export class StoreFormatError extends Error {
  override readonly name = 'StoreFormatError';
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
}

const toMessage = (row: MessageRow): StoredMessage => ({
  id: row.id,
  conversation: row.conversation,
  direction: row.direction,
  ...(row.sender_device_id === null ? {} : { senderDeviceId: row.sender_device_id }),
  text: row.text,
  sentAt: row.sent_at,
  receivedAt: row.received_at,
  status: row.status,
  ...(row.expires_at === null ? {} : { expiresAt: row.expires_at }),
  ...(row.deleted === null ? {} : { deleted: row.deleted === 1 }),
});

interface ContactRow {
  account_id: string;
  name: string;
  expire_seconds: number;
}

const toContact = (row: ContactRow): Contact => ({
  accountId: storedAccountId(row.account_id),
  name: row.name,
  expireSeconds: row.expire_seconds,
});

const UPDATABLE: Record<string, (value: unknown) => [string, SqlValue]> = {
  status: (value) => ['status', value as string],
  text: (value) => ['text', value as string],
  deleted: (value) => ['deleted', value === undefined ? null : value ? 1 : 0],
  expiresAt: (value) => ['expires_at', (value as number | undefined) ?? null],
};

/**
 * The client core's ClientStore on the device's SQLite (expo-sqlite): profile, contacts,
 * messages, outbox. Same semantics as the core's MemoryStore and the CLI's SqliteStore.
 * Operations run one at a time (a queue), so a multi-statement method is one transaction that
 * nothing else interleaves with. Deleted rows are overwritten (secure_delete), so that a
 * disappeared message does not linger in free pages.
 */
export class SqlClientStore implements ClientStore {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly db: SqlDatabase) {}

  /** Creates the schema in an empty database; refuses another database or a newer version. */
  static async open(db: SqlDatabase): Promise<SqlClientStore> {
    await db.execAsync('PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;');
    const version =
      (await db.getFirstAsync<{ user_version: number }>('PRAGMA user_version'))?.user_version ?? 0;
    const applicationId =
      (await db.getFirstAsync<{ application_id: number }>('PRAGMA application_id'))
        ?.application_id ?? 0;
    if (version === 0) {
      const tables = await db.getFirstAsync<{ n: number }>(
        'SELECT count(*) AS n FROM sqlite_master',
      );
      if ((tables?.n ?? 0) > 0 || applicationId !== 0)
        throw new StoreFormatError('the app database holds something else than privcomm data');
      await db.execAsync(
        `BEGIN IMMEDIATE; ${SCHEMA}
         PRAGMA application_id = ${APP_STORE_APPLICATION_ID};
         PRAGMA user_version = ${APP_STORE_VERSION}; COMMIT;`,
      );
    } else if (applicationId !== APP_STORE_APPLICATION_ID) {
      throw new StoreFormatError('the app database holds something else than privcomm data');
    } else if (version !== APP_STORE_VERSION) {
      throw new StoreFormatError(
        `the app database has format ${version}, this version of the app reads ${APP_STORE_VERSION}: update the app`,
      );
    }
    await db.execAsync(VALUES_TABLE);
    return new SqlClientStore(db);
  }

  /** Runs `work` after every operation before it, as one transaction when it writes. */
  private run<T>(work: () => Promise<T>, write = false): Promise<T> {
    const next = this.queue.then(async () => {
      if (!write) return work();
      await this.db.execAsync('BEGIN IMMEDIATE');
      try {
        const result = await work();
        await this.db.execAsync('COMMIT');
        return result;
      } catch (error) {
        await this.db.execAsync('ROLLBACK');
        throw error;
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  profile(): Promise<Profile | undefined> {
    return this.run(async () => {
      const row = await this.db.getFirstAsync<{
        relay_url: string;
        account_id: string;
        device_id: number;
        name: string | null;
        keys_rotated_at: number;
      }>('SELECT * FROM profile WHERE id = 1');
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
    return this.run(async () => {
      await this.db.runAsync(
        `INSERT INTO profile (id, relay_url, account_id, device_id, name, keys_rotated_at)
         VALUES (1, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET relay_url = excluded.relay_url,
           account_id = excluded.account_id, device_id = excluded.device_id,
           name = excluded.name, keys_rotated_at = excluded.keys_rotated_at`,
        profile.relayUrl,
        profile.accountId,
        profile.deviceId,
        profile.name ?? null,
        profile.keysRotatedAt,
      );
    }, true);
  }

  contacts(): Promise<Contact[]> {
    return this.run(async () =>
      (await this.db.getAllAsync<ContactRow>('SELECT * FROM contacts ORDER BY rowid')).map(
        toContact,
      ),
    );
  }

  contact(accountId: string): Promise<Contact | undefined> {
    return this.run(async () => {
      const row = await this.db.getFirstAsync<ContactRow>(
        'SELECT * FROM contacts WHERE account_id = ?',
        accountId,
      );
      return row ? toContact(row) : undefined;
    });
  }

  saveContact(contact: Contact): Promise<void> {
    return this.run(async () => {
      await this.db.runAsync(
        `INSERT INTO contacts (account_id, name, expire_seconds) VALUES (?, ?, ?)
         ON CONFLICT (account_id) DO UPDATE SET name = excluded.name,
           expire_seconds = excluded.expire_seconds`,
        contact.accountId,
        contact.name,
        contact.expireSeconds,
      );
    }, true);
  }

  addMessage(message: StoredMessage): Promise<boolean> {
    return this.run(async () => {
      const result = await this.db.runAsync(
        `INSERT INTO messages (conversation, direction, id, sender_device_id, text, sent_at,
           received_at, status, expires_at, deleted)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (conversation, direction, id) DO NOTHING`,
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
      );
      return result.changes === 1;
    }, true);
  }

  message(conversation: string, id: string): Promise<StoredMessage | undefined> {
    return this.run(async () => {
      const row = await this.db.getFirstAsync<MessageRow>(
        `SELECT * FROM messages WHERE conversation = ? AND id = ?
         ORDER BY CASE direction WHEN 'out' THEN 0 ELSE 1 END LIMIT 1`,
        conversation,
        id,
      );
      return row ? toMessage(row) : undefined;
    });
  }

  updateMessage(
    conversation: string,
    id: string,
    change: Partial<Pick<StoredMessage, 'status' | 'text' | 'deleted' | 'expiresAt'>>,
  ): Promise<void> {
    return this.run(async () => {
      const assignments = Object.entries(change)
        .filter(([field]) => field in UPDATABLE)
        .map(([field, value]) => (UPDATABLE[field] as (v: unknown) => [string, SqlValue])(value));
      if (assignments.length === 0) return;
      await this.db.runAsync(
        `UPDATE messages SET ${assignments.map(([column]) => `${column} = ?`).join(', ')}
         WHERE conversation = ? AND id = ?`,
        ...assignments.map(([, value]) => value),
        conversation,
        id,
      );
    }, true);
  }

  messages(conversation: string): Promise<StoredMessage[]> {
    return this.run(async () =>
      (
        await this.db.getAllAsync<MessageRow>(
          'SELECT * FROM messages WHERE conversation = ? ORDER BY sent_at, received_at, rowid',
          conversation,
        )
      ).map(toMessage),
    );
  }

  removeExpired(now: number): Promise<StoredMessage[]> {
    return this.run(async () => {
      const rows = await this.db.getAllAsync<MessageRow & { r: number }>(
        'SELECT rowid AS r, * FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY rowid',
        now,
      );
      for (const row of rows) await this.db.runAsync('DELETE FROM messages WHERE rowid = ?', row.r);
      return rows.map(({ r: _r, ...row }) => toMessage(row));
    }, true);
  }

  isProcessed(envelopeId: string): Promise<boolean> {
    return this.run(
      async () =>
        (await this.db.getFirstAsync(
          'SELECT 1 AS one FROM processed WHERE envelope_id = ?',
          envelopeId,
        )) !== null,
    );
  }

  markProcessed(envelopeId: string, at: number, forgetBefore: number): Promise<void> {
    return this.run(async () => {
      await this.db.runAsync(
        `INSERT INTO processed (envelope_id, at) VALUES (?, ?)
         ON CONFLICT (envelope_id) DO UPDATE SET at = excluded.at`,
        envelopeId,
        at,
      );
      await this.db.runAsync('DELETE FROM processed WHERE at < ?', forgetBefore);
    }, true);
  }

  outbox(): Promise<OutboxEntry[]> {
    return this.run(async () =>
      (
        await this.db.getAllAsync<{
          id: string;
          recipient: string;
          content: Uint8Array;
          online: number;
          urgent: number;
          created_at: number;
        }>('SELECT * FROM outbox ORDER BY created_at, rowid')
      ).map((row) => ({
        id: row.id,
        recipient: storedAccountId(row.recipient),
        // A copy as a plain Uint8Array, whatever the driver returns (Buffer in Node).
        content: Uint8Array.from(row.content),
        online: row.online === 1,
        urgent: row.urgent === 1,
        createdAt: row.created_at,
      })),
    );
  }

  addOutbox(entry: OutboxEntry): Promise<void> {
    return this.run(async () => {
      await this.db.runAsync(
        `INSERT INTO outbox (id, recipient, content, online, urgent, created_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET recipient = excluded.recipient,
           content = excluded.content, online = excluded.online, urgent = excluded.urgent,
           created_at = excluded.created_at`,
        entry.id,
        entry.recipient,
        entry.content,
        entry.online ? 1 : 0,
        entry.urgent ? 1 : 0,
        entry.createdAt,
      );
    }, true);
  }

  removeOutbox(id: string): Promise<void> {
    return this.run(async () => {
      await this.db.runAsync('DELETE FROM outbox WHERE id = ?', id);
    }, true);
  }

  conversationIds(): Promise<string[]> {
    return this.run(async () =>
      (
        await this.db.getAllAsync<{ conversation: string }>(
          'SELECT DISTINCT conversation FROM messages',
        )
      ).map((row) => row.conversation),
    );
  }

  deleteConversation(conversation: string): Promise<void> {
    return this.run(async () => {
      await this.db.runAsync('DELETE FROM messages WHERE conversation = ?', conversation);
    }, true);
  }

  value(key: string): Promise<string | undefined> {
    return this.run(
      async () =>
        (
          await this.db.getFirstAsync<{ value: string }>(
            'SELECT value FROM client_values WHERE key = ?',
            key,
          )
        )?.value,
    );
  }

  saveValue(key: string, value: string): Promise<void> {
    return this.run(async () => {
      await this.db.runAsync(
        'INSERT INTO client_values (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
        key,
        value,
      );
    }, true);
  }
}
