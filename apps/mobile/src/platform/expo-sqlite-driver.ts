import { immediateTransaction, SqlStore, type SqlDriver, type SqlValue } from '@privcomm/client';

/**
 * The few calls the driver makes, in expo-sqlite's shape (`SQLiteDatabase` satisfies it as it
 * is). Tests pass a better-sqlite3 stand-in, so the same SQL runs on a real SQLite in Node.
 */
export interface ExpoSqliteDatabase {
  execAsync(source: string): Promise<void>;
  runAsync(source: string, ...params: SqlValue[]): Promise<{ changes: number }>;
  getAllAsync<T>(source: string, ...params: SqlValue[]): Promise<T[]>;
  getFirstAsync<T>(source: string, ...params: SqlValue[]): Promise<T | null>;
  closeAsync(): Promise<void>;
}

/** The core's SqlDriver over an expo-sqlite database. */
export const expoSqliteDriver = (db: ExpoSqliteDatabase): SqlDriver => ({
  exec: (sql) => db.execAsync(sql),
  run: async (sql, params = []) => ({ changes: (await db.runAsync(sql, ...params)).changes }),
  get: async <T>(sql: string, params: readonly SqlValue[] = []) =>
    (await db.getFirstAsync<T>(sql, ...params)) ?? undefined,
  all: <T>(sql: string, params: readonly SqlValue[] = []) => db.getAllAsync<T>(sql, ...params),
  // The core's SqlStore runs one operation at a time, so nothing else uses the connection while
  // a transaction is open; expo-sqlite's withTransactionAsync would not use BEGIN IMMEDIATE.
  transaction: (work) => immediateTransaction((sql) => db.execAsync(sql), work),
  close: () => db.closeAsync(),
});

/** The app's client store on `db` (the core's SqlStore; StoreFormatError for another database). */
export const openAppStore = (db: ExpoSqliteDatabase): Promise<SqlStore> =>
  SqlStore.open(expoSqliteDriver(db));
