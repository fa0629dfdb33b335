import { createPublicKey, verify } from 'node:crypto';
import { httpRequest } from '@privcomm/client';
import { sqlStoreContract, storeContract } from '@privcomm/client/testing/store-contract';
import {
  SecretFormatError,
  SecureStoreSigner,
  AUTH_KEY_ENTRY,
} from '../src/platform/secure-signer.ts';
import { expoSqliteDriver, openAppStore } from '../src/platform/expo-sqlite-driver.ts';
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
