import { chmodSync, closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * The protocol store's SQLite database (better-sqlite3, synchronous) and its one rule: every
 * engine operation runs alone, inside one `BEGIN IMMEDIATE ... COMMIT`, and rolls back whole
 * if it throws.
 */

/** The part of better-sqlite3's API the engine uses (the package ships no types). */
export interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

export interface SqliteDatabase {
  prepare(sql: string): Statement;
  exec(sql: string): void;
  pragma(sql: string, options?: { simple?: boolean }): unknown;
  close(): void;
  readonly inTransaction: boolean;
}

type DatabaseConstructor = new (
  file: string,
  options?: { timeout?: number; fileMustExist?: boolean },
) => SqliteDatabase;

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3') as DatabaseConstructor;

const SCHEMA_VERSION = 2;

const SCHEMA = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
  CREATE TABLE prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
  CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
  CREATE TABLE kyber_prekeys (
    id INTEGER PRIMARY KEY,
    record BLOB NOT NULL,
    last_resort INTEGER NOT NULL
  );
  -- Uses of last-resort Kyber prekeys, so that a replayed PreKey message cannot rebuild a session.
  CREATE TABLE kyber_prekey_uses (
    kyber_id INTEGER NOT NULL,
    signed_id INTEGER NOT NULL,
    base_key BLOB NOT NULL,
    PRIMARY KEY (kyber_id, signed_id, base_key)
  ) WITHOUT ROWID;
  CREATE TABLE sessions (
    account_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id)
  ) WITHOUT ROWID;
  CREATE TABLE identities (
    account_id TEXT PRIMARY KEY,
    identity_key BLOB NOT NULL,
    verified INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    pending_key BLOB
  ) WITHOUT ROWID;
  CREATE TABLE decrypted (
    envelope_id TEXT PRIMARY KEY,
    sender_account TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    plaintext BLOB NOT NULL
  ) WITHOUT ROWID;
`;

/** Version 2: group sender keys, and the distribution id a decrypted group message came under. */
const GROUPS = `
  -- Sender keys (libsignal SenderKeyRecord): this device's own, under its own address, and the
  -- ones other devices sent it pairwise.
  CREATE TABLE sender_keys (
    account_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    distribution_id TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, distribution_id)
  ) WITHOUT ROWID;
  -- This device's first distribution message of each of its own distribution ids (see
  -- NodeSignalEngine.senderKeyDistribution: a late recipient can still open earlier messages).
  CREATE TABLE sender_key_distributions (
    distribution_id TEXT PRIMARY KEY,
    message BLOB NOT NULL
  ) WITHOUT ROWID;
  ALTER TABLE decrypted ADD COLUMN distribution_id TEXT;
`;

/** What brings a store from each older version to the next one. */
const MIGRATIONS: Record<number, string> = { 1: GROUPS };

/**
 * Opens (creating if needed) the store. A file is created with mode 0600 before SQLite opens it;
 * the rollback journal (journal_mode=DELETE, no WAL or shm files) inherits that mode.
 */
export const openDatabase = (file: string): SqliteDatabase => {
  if (file !== ':memory:') {
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
  }
  const db = new Database(file, { timeout: 5000 });
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = FULL');
    // Deleted prekeys, provisioning keys and plaintexts are overwritten, not left in free pages.
    db.pragma('secure_delete = ON');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === 0) {
      db.exec(
        `BEGIN IMMEDIATE; ${SCHEMA} ${GROUPS} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`,
      );
    } else if (version > SCHEMA_VERSION || version < 1) {
      throw new Error(`unsupported engine store version ${version}`);
    }
    for (let from = version === 0 ? SCHEMA_VERSION : version; from < SCHEMA_VERSION; from += 1) {
      // One transaction per step: a store is always at one whole version.
      db.exec(`BEGIN IMMEDIATE; ${MIGRATIONS[from]} PRAGMA user_version = ${from + 1}; COMMIT;`);
    }
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
};

/** Work to do after a rollback, in its own transaction (e.g. recording a pending identity). */
export type AfterRollback = () => void;

/**
 * Serialises operations on one database and runs each in one transaction. libsignal calls the
 * store back asynchronously in the middle of an operation; because nothing else touches the
 * database while an operation is queued ahead, all those callbacks land in its transaction.
 */
export class TransactionQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly db: SqliteDatabase) {}

  run<T>(operation: (afterRollback: (work: AfterRollback) => void) => Promise<T> | T): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the engine is closed'));
    const result = this.tail.then(async () => {
      const deferred: AfterRollback[] = [];
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const value = await operation((work) => deferred.push(work));
        this.db.exec('COMMIT');
        return value;
      } catch (error) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        if (deferred.length > 0) {
          this.db.exec('BEGIN IMMEDIATE');
          try {
            for (const work of deferred) work();
            this.db.exec('COMMIT');
          } catch {
            if (this.db.inTransaction) this.db.exec('ROLLBACK');
          }
        }
        throw error;
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /**
   * After the operations already queued: deletes every row of every table in one transaction
   * (secure_delete overwrites them), VACUUMs so that no freed page keeps a copy, and closes.
   * The schema stays: opening the file again gives an empty store.
   */
  async wipe(): Promise<void> {
    if (this.closed) throw new Error('the engine is closed');
    this.closed = true;
    await this.tail;
    try {
      const tables = this.db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .all() as { name: string }[];
      this.db.exec('BEGIN IMMEDIATE');
      try {
        for (const { name } of tables) this.db.exec(`DELETE FROM "${name}"`);
        this.db.exec('COMMIT');
      } catch (error) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw error;
      }
      this.db.exec('VACUUM');
    } finally {
      this.db.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    this.db.close();
  }
}
