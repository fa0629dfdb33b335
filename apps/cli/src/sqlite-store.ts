import { chmodSync, closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type {
  ClientStore,
  Contact,
  MessageStatus,
  OutboxEntry,
  Profile,
  StoredMessage,
} from '@privcomm/client';
import { isAccountId, isDeviceId, type AccountId, type DeviceId } from '@privcomm/wire';
import { ProfileError } from './profile-paths.ts';

/**
 * Ids read back from this store, branded by wire's guards. Only checked ids are ever written, so
 * one that fails here means the file was damaged or edited: the profile is refused, unchanged.
 */
const storedAccountId = (value: string): AccountId => {
  if (!isAccountId(value)) throw new ProfileError('the client store holds an invalid account id');
  return value;
};
const storedDeviceId = (value: number): DeviceId => {
  if (!isDeviceId(value)) throw new ProfileError('the client store holds an invalid device id');
  return value;
};

/** "pcli" in ASCII: marks a file as this store, so that another SQLite file is not taken for it. */
export const CLIENT_STORE_APPLICATION_ID = 0x70636c69;
export const CLIENT_STORE_VERSION = 1;

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
  );
`;

/**
 * The core's own small records (ClientStore.value: settings, blocked accounts). Added after
 * version 1 without changing it: created if missing, so a file made before it gains it.
 */
const VALUES_TABLE =
  'CREATE TABLE IF NOT EXISTS client_values (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;';

/** The file is not this store (another SQLite database, or a newer version of it). */
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

const UPDATABLE: Record<string, (value: unknown) => [string, unknown]> = {
  status: (value) => ['status', value],
  text: (value) => ['text', value],
  deleted: (value) => ['deleted', value === undefined ? null : value ? 1 : 0],
  expiresAt: (value) => ['expires_at', value ?? null],
};

/**
 * ClientStore on SQLite (better-sqlite3): the CLI's messages, contacts, outbox and profile.
 * Same semantics as MemoryStore (the contract test runs both); each method is one transaction.
 * The file is created with mode 0600; deleted rows are overwritten (secure_delete), so that a
 * disappeared message does not linger in free pages.
 */
export class SqliteStore implements ClientStore {
  private constructor(private readonly db: Database.Database) {}

  /**
   * Opens `file` (':memory:' for tests). With `create: false` the file must exist already.
   * Throws StoreFormatError, without writing anything, when the file is another database.
   */
  static open(file: string, options: { create: boolean }): SqliteStore {
    if (file !== ':memory:' && options.create) {
      closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    }
    const db = new Database(file, { fileMustExist: file !== ':memory:', timeout: 5000 });
    try {
      db.pragma('journal_mode = DELETE');
      db.pragma('synchronous = FULL');
      db.pragma('secure_delete = ON');
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      const applicationId = db.pragma('application_id', { simple: true }) as number;
      if (version === 0) {
        const tables = db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as {
          n: number;
        };
        if (tables.n > 0 || applicationId !== 0)
          throw new StoreFormatError('it is a SQLite database, but not a privcomm client store');
        db.exec(
          `BEGIN IMMEDIATE; ${SCHEMA}
           PRAGMA application_id = ${CLIENT_STORE_APPLICATION_ID};
           PRAGMA user_version = ${CLIENT_STORE_VERSION}; COMMIT;`,
        );
      } else if (applicationId !== CLIENT_STORE_APPLICATION_ID) {
        throw new StoreFormatError('it is a SQLite database, but not a privcomm client store');
      } else if (version !== CLIENT_STORE_VERSION) {
        throw new StoreFormatError(
          `its format version ${version} is not supported by this privcomm (${CLIENT_STORE_VERSION})`,
        );
      }
      db.exec(VALUES_TABLE);
    } catch (error) {
      db.close();
      throw error;
    }
    return new SqliteStore(db);
  }

  /** One write transaction (BEGIN IMMEDIATE: another process waits up to the busy timeout). */
  private tx<T>(work: () => T): Promise<T> {
    // Inside a promise: a failure (such as a damaged id) is a rejection, not a synchronous throw.
    return new Promise((resolve) => resolve(this.db.transaction(work).immediate()));
  }

  /** One read transaction. */
  private read<T>(work: () => T): Promise<T> {
    return new Promise((resolve) => resolve(this.db.transaction(work).deferred()));
  }

  profile(): Promise<Profile | undefined> {
    return this.read(() => {
      const row = this.db.prepare('SELECT * FROM profile WHERE id = 1').get() as
        | {
            relay_url: string;
            account_id: string;
            device_id: number;
            name: string | null;
            keys_rotated_at: number;
          }
        | undefined;
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
    return this.tx(() => {
      this.db
        .prepare(
          `INSERT INTO profile (id, relay_url, account_id, device_id, name, keys_rotated_at)
           VALUES (1, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET relay_url = excluded.relay_url,
             account_id = excluded.account_id, device_id = excluded.device_id,
             name = excluded.name, keys_rotated_at = excluded.keys_rotated_at`,
        )
        .run(
          profile.relayUrl,
          profile.accountId,
          profile.deviceId,
          profile.name ?? null,
          profile.keysRotatedAt,
        );
    });
  }

  contacts(): Promise<Contact[]> {
    return this.read(() =>
      (this.db.prepare('SELECT * FROM contacts ORDER BY rowid').all() as ContactRow[]).map(
        toContact,
      ),
    );
  }

  contact(accountId: string): Promise<Contact | undefined> {
    return this.read(() => {
      const row = this.db.prepare('SELECT * FROM contacts WHERE account_id = ?').get(accountId) as
        ContactRow | undefined;
      return row && toContact(row);
    });
  }

  saveContact(contact: Contact): Promise<void> {
    return this.tx(() => {
      this.db
        .prepare(
          `INSERT INTO contacts (account_id, name, expire_seconds) VALUES (?, ?, ?)
           ON CONFLICT (account_id) DO UPDATE SET name = excluded.name,
             expire_seconds = excluded.expire_seconds`,
        )
        .run(contact.accountId, contact.name, contact.expireSeconds);
    });
  }

  addMessage(message: StoredMessage): Promise<boolean> {
    return this.tx(() => {
      const result = this.db
        .prepare(
          `INSERT INTO messages (conversation, direction, id, sender_device_id, text, sent_at,
             received_at, status, expires_at, deleted)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (conversation, direction, id) DO NOTHING`,
        )
        .run(
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
    });
  }

  message(conversation: string, id: string): Promise<StoredMessage | undefined> {
    return this.read(() => {
      const row = this.db
        .prepare(
          `SELECT * FROM messages WHERE conversation = ? AND id = ?
           ORDER BY CASE direction WHEN 'out' THEN 0 ELSE 1 END LIMIT 1`,
        )
        .get(conversation, id) as MessageRow | undefined;
      return row && toMessage(row);
    });
  }

  updateMessage(
    conversation: string,
    id: string,
    change: Partial<Pick<StoredMessage, 'status' | 'text' | 'deleted' | 'expiresAt'>>,
  ): Promise<void> {
    return this.tx(() => {
      const assignments = Object.entries(change)
        .filter(([field]) => field in UPDATABLE)
        .map(([field, value]) => (UPDATABLE[field] as (v: unknown) => [string, unknown])(value));
      if (assignments.length === 0) return;
      this.db
        .prepare(
          `UPDATE messages SET ${assignments.map(([column]) => `${column} = ?`).join(', ')}
           WHERE conversation = ? AND id = ?`,
        )
        .run(...assignments.map(([, value]) => value), conversation, id);
    });
  }

  messages(conversation: string): Promise<StoredMessage[]> {
    return this.read(() =>
      (
        this.db
          .prepare(
            `SELECT * FROM messages WHERE conversation = ?
             ORDER BY sent_at, received_at, rowid`,
          )
          .all(conversation) as MessageRow[]
      ).map(toMessage),
    );
  }

  removeExpired(now: number): Promise<StoredMessage[]> {
    return this.tx(() => {
      const rows = this.db
        .prepare(
          'SELECT rowid AS r, * FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY rowid',
        )
        .all(now) as (MessageRow & { r: number })[];
      const remove = this.db.prepare('DELETE FROM messages WHERE rowid = ?');
      for (const row of rows) remove.run(row.r);
      return rows.map(({ r: _r, ...row }) => toMessage(row));
    });
  }

  isProcessed(envelopeId: string): Promise<boolean> {
    return this.read(
      () =>
        this.db.prepare('SELECT 1 FROM processed WHERE envelope_id = ?').get(envelopeId) !==
        undefined,
    );
  }

  markProcessed(envelopeId: string, at: number, forgetBefore: number): Promise<void> {
    return this.tx(() => {
      this.db
        .prepare(
          `INSERT INTO processed (envelope_id, at) VALUES (?, ?)
           ON CONFLICT (envelope_id) DO UPDATE SET at = excluded.at`,
        )
        .run(envelopeId, at);
      this.db.prepare('DELETE FROM processed WHERE at < ?').run(forgetBefore);
    });
  }

  outbox(): Promise<OutboxEntry[]> {
    return this.read(() =>
      (
        this.db.prepare('SELECT * FROM outbox ORDER BY created_at, rowid').all() as {
          id: string;
          recipient: string;
          content: Buffer;
          online: number;
          urgent: number;
          created_at: number;
        }[]
      ).map((row) => ({
        id: row.id,
        recipient: storedAccountId(row.recipient),
        content: new Uint8Array(row.content),
        online: row.online === 1,
        urgent: row.urgent === 1,
        createdAt: row.created_at,
      })),
    );
  }

  addOutbox(entry: OutboxEntry): Promise<void> {
    return this.tx(() => {
      this.db
        .prepare(
          `INSERT INTO outbox (id, recipient, content, online, urgent, created_at)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET recipient = excluded.recipient,
             content = excluded.content, online = excluded.online, urgent = excluded.urgent,
             created_at = excluded.created_at`,
        )
        .run(
          entry.id,
          entry.recipient,
          Buffer.from(entry.content),
          entry.online ? 1 : 0,
          entry.urgent ? 1 : 0,
          entry.createdAt,
        );
    });
  }

  removeOutbox(id: string): Promise<void> {
    return this.tx(() => {
      this.db.prepare('DELETE FROM outbox WHERE id = ?').run(id);
    });
  }

  conversationIds(): Promise<string[]> {
    return this.read(() =>
      (
        this.db.prepare('SELECT DISTINCT conversation FROM messages').all() as {
          conversation: string;
        }[]
      ).map((row) => row.conversation),
    );
  }

  deleteConversation(conversation: string): Promise<void> {
    return this.tx(() => {
      this.db.prepare('DELETE FROM messages WHERE conversation = ?').run(conversation);
    });
  }

  value(key: string): Promise<string | undefined> {
    return this.read(
      () =>
        (
          this.db.prepare('SELECT value FROM client_values WHERE key = ?').get(key) as
            { value: string } | undefined
        )?.value,
    );
  }

  saveValue(key: string, value: string): Promise<void> {
    return this.tx(() => {
      this.db
        .prepare(
          'INSERT INTO client_values (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
        )
        .run(key, value);
    });
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
