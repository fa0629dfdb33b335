import { chmodSync, closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { immediateTransaction, SqlStore, type SqlDriver, type SqlValue } from '@privcomm/client';

/** better-sqlite3 binds Buffers, not plain Uint8Arrays. */
const bind = (params: readonly SqlValue[]): unknown[] =>
  params.map((value) => (value instanceof Uint8Array ? Buffer.from(value) : value));

/** The core's SqlDriver over a better-sqlite3 connection (synchronous calls, async shape). */
export const betterSqliteDriver = (db: Database.Database): SqlDriver => ({
  exec: async (sql) => {
    db.exec(sql);
  },
  run: async (sql, params = []) => ({ changes: db.prepare(sql).run(...bind(params)).changes }),
  get: async <T>(sql: string, params: readonly SqlValue[] = []) =>
    db.prepare(sql).get(...bind(params)) as T | undefined,
  all: async <T>(sql: string, params: readonly SqlValue[] = []) =>
    db.prepare(sql).all(...bind(params)) as T[],
  transaction: (work) => immediateTransaction(async (sql) => void db.exec(sql), work),
  close: async () => {
    if (db.open) db.close();
  },
});

/**
 * Opens the CLI's client store file for the core's SqlStore (':memory:' for tests). With
 * `create: false` the file must exist already. The file is created with mode 0600 before
 * SQLite opens it, and uses a rollback journal (no WAL or shared-memory files), which SQLite
 * creates with the database's mode; another process holding the lock is waited for up to 5 s.
 */
export const openSqliteFile = (file: string, options: { create: boolean }): SqlDriver => {
  if (file !== ':memory:' && options.create) {
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
  }
  const db = new Database(file, { fileMustExist: file !== ':memory:', timeout: 5000 });
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = FULL');
  } catch (error) {
    db.close();
    throw error;
  }
  return betterSqliteDriver(db);
};

/**
 * The profile's client store: `file` opened with openSqliteFile, its format checked (and an
 * older one migrated) by the core. Throws StoreFormatError, writing nothing, for another file.
 */
export const openClientStore = async (
  file: string,
  options: { create: boolean },
): Promise<SqlStore> => {
  const driver = openSqliteFile(file, options);
  try {
    return await SqlStore.open(driver);
  } catch (error) {
    await driver.close();
    throw error;
  }
};
