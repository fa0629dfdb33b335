import { createPublicKey, verify } from 'node:crypto';
import { httpRequest, isAccountId, type AccountId, type StoredMessage } from '@privcomm/client';
import {
  SecretFormatError,
  SecureStoreSigner,
  AUTH_KEY_ENTRY,
} from '../src/platform/secure-signer.ts';
import { SqlClientStore, StoreFormatError } from '../src/platform/sql-store.ts';
import { createTransport } from '../src/platform/transport.ts';
import { betterSqlite, memorySecrets, nodeHttpFetch, relayUrl } from './support/test-platform.ts';
import WebSocket from 'ws';

/** Account ids for fixtures, made by the guard (the store checks what it reads back). */
const accountIdOf = (value: string): AccountId => {
  if (!isAccountId(value)) throw new Error(`test fixture: ${value} is not an account id`);
  return value;
};
const R = accountIdOf('22222222-2222-4222-8222-222222222222');
const X = accountIdOf('33333333-3333-4333-8333-333333333333');

const message = (id: string, change: Partial<StoredMessage> = {}): StoredMessage => ({
  id,
  conversation: 'c1',
  direction: 'out',
  text: `text ${id}`,
  sentAt: 1,
  receivedAt: 1,
  status: 'sending',
  ...change,
});

describe('SqlClientStore on a real SQLite', () => {
  it('keeps messages once per id, updates them, and removes expired ones', async () => {
    const store = await SqlClientStore.open(betterSqlite());
    expect(await store.addMessage(message('a', { expiresAt: 10 }))).toBe(true);
    expect(await store.addMessage(message('a'))).toBe(false);
    expect(await store.addMessage(message('a', { direction: 'in', status: 'delivered' }))).toBe(
      true,
    );
    await store.updateMessage('c1', 'a', { status: 'read', deleted: true });
    expect(await store.message('c1', 'a')).toMatchObject({
      direction: 'out',
      status: 'read',
      deleted: true,
    });
    expect(await store.removeExpired(11)).toEqual([
      expect.objectContaining({ id: 'a', direction: 'out' }),
    ]);
    expect((await store.messages('c1')).map((m) => m.direction)).toEqual(['in']);
  });

  it('keeps outbox bytes exactly, and forgets processed envelopes older than asked', async () => {
    const store = await SqlClientStore.open(betterSqlite());
    const content = Uint8Array.from([0, 1, 2, 255]);
    await store.addOutbox({
      id: 'o',
      recipient: R,
      content,
      online: false,
      urgent: true,
      createdAt: 5,
    });
    expect(await store.outbox()).toEqual([
      { id: 'o', recipient: R, content, online: false, urgent: true, createdAt: 5 },
    ]);
    await store.markProcessed('e1', 100, 0);
    await store.markProcessed('e2', 200, 150);
    expect([await store.isProcessed('e1'), await store.isProcessed('e2')]).toEqual([false, true]);
  });

  it('refuses a database that holds something else, without touching it', async () => {
    const db = betterSqlite();
    await db.execAsync('CREATE TABLE notes (body TEXT)');
    await expect(SqlClientStore.open(db)).rejects.toBeInstanceOf(StoreFormatError);
    expect(await db.getFirstAsync('SELECT count(*) AS n FROM sqlite_master')).toEqual({ n: 1 });
  });

  it("lists and deletes conversations, and keeps the core's values, also in a database made before they existed", async () => {
    const db = betterSqlite();
    await SqlClientStore.open(db);
    await db.execAsync('DROP TABLE client_values'); // as a version-1 database made before it
    const store = await SqlClientStore.open(db);
    await store.addMessage({
      id: 'a',
      conversation: X,
      direction: 'in',
      text: 'hi',
      sentAt: 1,
      receivedAt: 1,
      status: 'delivered',
    });
    expect(await store.conversationIds()).toEqual([X]);
    await store.deleteConversation(X);
    expect(await store.conversationIds()).toEqual([]);
    expect(await store.value('settings.v1')).toBeUndefined();
    await store.saveValue('settings.v1', '{"readReceipts":false}');
    expect(await (await SqlClientStore.open(db)).value('settings.v1')).toBe(
      '{"readReceipts":false}',
    );
  });

  it('opens its own database again with what it stored', async () => {
    const db = betterSqlite();
    const first = await SqlClientStore.open(db);
    await first.saveContact({ accountId: X, name: 'X', expireSeconds: 60 });
    const again = await SqlClientStore.open(db);
    expect(await again.contacts()).toEqual([{ accountId: X, name: 'X', expireSeconds: 60 }]);
  });
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
