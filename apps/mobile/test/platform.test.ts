import { createPublicKey, verify } from 'node:crypto';
import { httpRequest } from '@privcomm/client';
import { sqlStoreContract, storeContract } from '@privcomm/client/testing/store-contract';
import {
  SecretFormatError,
  SecureStoreSigner,
  AUTH_KEY_ENTRY,
} from '../src/platform/secure-signer.ts';
import {
  expoSqliteDriver,
  openAppStore,
  type ExpoSqliteDatabase,
} from '../src/platform/expo-sqlite-driver.ts';
import {
  loadOrCreateStoreKey,
  openEncryptedAppStore,
  STORE_KEY_ENTRY,
  StoreEncryptionError,
} from '../src/platform/encrypted-store.ts';
import { createTransport } from '../src/platform/transport.ts';
import { betterSqlite, memorySecrets, nodeHttpFetch, relayUrl } from './support/test-platform.ts';
import WebSocket from 'ws';

// The core's store contract and its SQL format checks, on the app's expo-sqlite driver over a
// real SQLite (better-sqlite3 in expo-sqlite's shape).
storeContract(
  'SqlStore on the expo-sqlite driver',
  async () => {
    const store = await openAppStore(betterSqlite());
    return { store, close: () => store.close() };
  },
  { describe, it, expect },
);
sqlStoreContract('expo-sqlite driver', async () => expoSqliteDriver(betterSqlite()), {
  describe,
  it,
  expect,
});

describe('SecureStoreSigner', () => {
  it('keeps its seed in the secure store only, and signs what Ed25519 verifies', async () => {
    const secrets = memorySecrets();
    const signer = await SecureStoreSigner.loadOrCreate(secrets, () => new Uint8Array(32).fill(7));
    expect([...secrets.entries.keys()]).toEqual([AUTH_KEY_ENTRY]);
    const again = await SecureStoreSigner.loadOrCreate(secrets, () => {
      throw new Error('must not create a second key');
    });
    expect(await again.publicKey()).toEqual(await signer.publicKey());
    const spki = Buffer.concat([
      Buffer.from('302a300506032b6570032100', 'hex'),
      await signer.publicKey(),
    ]);
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const challenge = Buffer.from('challenge');
    expect(verify(null, challenge, key, await again.sign(challenge))).toBe(true);
  });

  it('refuses a stored key that is not a 32-byte seed', async () => {
    const secrets = memorySecrets();
    await secrets.setItemAsync(AUTH_KEY_ENTRY, 'AAAA');
    await expect(
      SecureStoreSigner.loadOrCreate(secrets, () => new Uint8Array(32)),
    ).rejects.toBeInstanceOf(SecretFormatError);
  });
});

describe('the encrypted store (SQLCipher)', () => {
  const random = (fill: number) => (n: number) => new Uint8Array(n).fill(fill);

  it('creates its key once, in the secure store only, and refuses one that is not 64 hex digits', async () => {
    const secrets = memorySecrets();
    const key = await loadOrCreateStoreKey(secrets, random(0xab));
    expect(key).toBe('ab'.repeat(32));
    expect([...secrets.entries.keys()]).toEqual([STORE_KEY_ENTRY]);
    expect(
      await loadOrCreateStoreKey(secrets, () => {
        throw new Error('must not create a second key');
      }),
    ).toBe(key);
    await secrets.setItemAsync(STORE_KEY_ENTRY, 'not a key');
    await expect(loadOrCreateStoreKey(secrets, random(1))).rejects.toBeInstanceOf(
      SecretFormatError,
    );
  });

  it('refuses a SQLite without SQLCipher rather than store messages in the clear, and closes it', async () => {
    // better-sqlite3 is a plain SQLite: it ignores PRAGMA key, as a build without useSQLCipher would.
    const db = betterSqlite();
    const failure = await openEncryptedAppStore(db, memorySecrets(), random(1)).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(StoreEncryptionError);
    expect(failure).toMatchObject({ code: 'NO_SQLCIPHER', message: /useSQLCipher/ });
    await expect(db.execAsync('SELECT 1')).rejects.toThrow(/not open/);
  });

  /** A plain SQLite that answers as SQLCipher would, and records the statements it runs. */
  const cipherStandIn = (options: { wrongKey?: boolean } = {}) => {
    const db = betterSqlite();
    const statements: string[] = [];
    const standIn: ExpoSqliteDatabase = {
      ...db,
      execAsync: async (source) => {
        statements.push(source);
        if (!source.startsWith('PRAGMA key')) await db.execAsync(source);
      },
      getFirstAsync: async <T>(source: string, ...params: never[]) => {
        statements.push(source);
        if (source === 'PRAGMA cipher_version') return { cipher_version: '4.7.0 community' } as T;
        if (options.wrongKey && source.includes('sqlite_master'))
          throw new Error('file is not a database');
        return db.getFirstAsync<T>(source, ...params);
      },
    };
    return { standIn, statements };
  };

  it('gives the stored key to SQLCipher before any other statement, then opens the store', async () => {
    const secrets = memorySecrets();
    const { standIn, statements } = cipherStandIn();
    const store = await openEncryptedAppStore(standIn, secrets, random(0x5c));
    expect(statements[0]).toBe(`PRAGMA key = "x'${'5c'.repeat(32)}'";`);
    expect(secrets.entries.get(STORE_KEY_ENTRY)).toBe('5c'.repeat(32));
    await store.saveValue('k', 'v');
    expect(await store.value('k')).toBe('v');
    await store.close();
  });

  it('says what to do when the key does not open the database', async () => {
    const { standIn } = cipherStandIn({ wrongKey: true });
    await expect(openEncryptedAppStore(standIn, memorySecrets(), random(2))).rejects.toMatchObject({
      code: 'WRONG_KEY',
      message: /clear privcomm's data/,
    });
  });
});

describe('transport', () => {
  it('reaches the relay over fetch, and a closed port becomes RELAY_UNREACHABLE in the core', async () => {
    const transport = createTransport(`${relayUrl()}/`, {
      fetch: nodeHttpFetch,
      WebSocket: WebSocket as never,
    });
    expect(transport.relayUrl).toBe(relayUrl());
    const response = await transport.fetch(`${transport.relayUrl}/v1/auth/challenge`, {
      method: 'POST',
      headers: {},
    });
    expect(response.status).toBeGreaterThanOrEqual(200);
    const closed = createTransport('http://127.0.0.1:9', {
      fetch: nodeHttpFetch,
      WebSocket: WebSocket as never,
    });
    await expect(httpRequest(closed, 'GET', '/v1/health')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
  });
});
