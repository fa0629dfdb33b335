import type { SqlStore } from '@privcomm/client';
import { openAppStore, type ExpoSqliteDatabase } from './expo-sqlite-driver.ts';
import type { SecretStore } from './secrets.ts';
import { SecretFormatError } from './secure-signer.ts';

/** The secure-store entry holding the message database's key (32 random bytes, as hex). */
export const STORE_KEY_ENTRY = 'privcomm.store-key.v1';

const KEY_HEX = /^[0-9a-f]{64}$/;

/** The message database cannot be opened encrypted; `code` says why, the message what to do. */
export class StoreEncryptionError extends Error {
  override readonly name = 'StoreEncryptionError';
  constructor(
    readonly code: 'NO_SQLCIPHER' | 'WRONG_KEY',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const toHex = (bytes: Uint8Array): string =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');

/**
 * The database's key from the secure store (expo-secure-store: encrypted under a Keystore key),
 * or a new random one on first run. Never in AsyncStorage, never in the database itself.
 */
export const loadOrCreateStoreKey = async (
  secrets: SecretStore,
  randomBytes: (length: number) => Uint8Array,
): Promise<string> => {
  const stored = await secrets.getItemAsync(STORE_KEY_ENTRY);
  if (stored !== null) {
    if (!KEY_HEX.test(stored))
      throw new SecretFormatError('the stored database key is not 64 hex digits');
    return stored;
  }
  const key = toHex(randomBytes(32));
  await secrets.setItemAsync(STORE_KEY_ENTRY, key);
  return key;
};

/**
 * The app's client store in an SQLCipher database (expo-sqlite built with `useSQLCipher`,
 * app.json). The key goes in first, as a raw 256-bit key (`x'…'`: random already, so SQLCipher's
 * passphrase derivation would only slow the start). A build whose SQLite has no SQLCipher would
 * ignore the key and write the messages in the clear: that is refused, never run. On failure
 * the database is closed.
 */
export const openEncryptedAppStore = async (
  db: ExpoSqliteDatabase,
  secrets: SecretStore,
  randomBytes: (length: number) => Uint8Array,
): Promise<SqlStore> => {
  try {
    const key = await loadOrCreateStoreKey(secrets, randomBytes);
    await db.execAsync(`PRAGMA key = "x'${key}'";`);
    const cipher = await db.getFirstAsync<{ cipher_version?: string }>('PRAGMA cipher_version');
    if (!cipher?.cipher_version)
      throw new StoreEncryptionError(
        'NO_SQLCIPHER',
        "this build's SQLite has no SQLCipher, so the messages would be stored unencrypted: build the app with expo-sqlite's useSQLCipher (app.json)",
      );
    try {
      // The first read of a page: a wrong key fails here ("file is not a database").
      await db.getFirstAsync('SELECT count(*) AS n FROM sqlite_master');
    } catch (error) {
      throw new StoreEncryptionError(
        'WRONG_KEY',
        "the message database does not open with the key in this phone's secure store (was the key lost, or the database restored from elsewhere?); to start again, clear privcomm's data in Android's settings",
        { cause: error },
      );
    }
    return await openAppStore(db);
  } catch (error) {
    // The error to report is the one above; a close that fails as well adds nothing to it.
    await db.closeAsync().catch(() => undefined);
    throw error;
  }
};
