import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SQL_STORE_VERSION, StoreFormatError, type StoredMessage } from '@privcomm/client';
import { accountIdOf, deviceIdOf, sqlStoreContract, storeContract } from '@privcomm/client/testing';
import { openClientStore, openSqliteFile } from '../src/sqlite-driver.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
const newFile = (): string => path.join(dir, `store-${fileCounter++}.sqlite`);

storeContract(
  'SqlStore on better-sqlite3 (file)',
  async () => {
    const store = await openClientStore(newFile(), { create: true });
    return { store, close: () => store.close() };
  },
  { describe, it, expect },
);
sqlStoreContract('better-sqlite3 (file)', async () => openSqliteFile(newFile(), { create: true }), {
  describe,
  it,
  expect,
});

const A = accountIdOf('11111111-1111-4111-8111-111111111111');
const B = accountIdOf('22222222-2222-4222-8222-222222222222');

const msg = (over: Partial<StoredMessage> & Pick<StoredMessage, 'id'>): StoredMessage => ({
  conversation: A,
  direction: 'in',
  text: `text ${over.id}`,
  sentAt: 1000,
  receivedAt: 2000,
  status: 'delivered',
  ...over,
});

describe("the CLI's client store on disk", () => {
  it('creates the file with mode 0600 and keeps everything across reopening', async () => {
    const file = newFile();
    const first = await openClientStore(file, { create: true });
    await first.saveProfile({
      relayUrl: 'http://r',
      accountId: A,
      deviceId: deviceIdOf(1),
      keysRotatedAt: 1,
    });
    await first.addMessage(msg({ id: 'kept' }));
    await first.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const second = await openClientStore(file, { create: false });
    expect((await second.profile())?.accountId).toBe(A);
    expect((await second.messages(A)).map((m) => m.id)).toEqual(['kept']);
    await second.close();
  });

  it('opens a client.sqlite written by the CLI before the store moved into the core', async () => {
    // test/fixtures/client-store-v1.sqlite: written by apps/cli/src/sqlite-store.ts (format 1)
    // at commit eed0a3c, the last one that had it.
    const file = newFile();
    copyFileSync(path.join(import.meta.dirname, 'fixtures', 'client-store-v1.sqlite'), file);
    const store = await openClientStore(file, { create: false });
    expect(await store.profile()).toEqual({
      relayUrl: 'http://relay.example',
      accountId: A,
      deviceId: deviceIdOf(1),
      name: 'Alice',
      keysRotatedAt: 1_700_000_000_000,
    });
    expect(await store.contacts()).toEqual([{ accountId: B, name: 'bob', expireSeconds: 3600 }]);
    expect(await store.messages(B)).toEqual([
      {
        id: 'm1',
        conversation: B,
        direction: 'out',
        text: 'written by version 1',
        sentAt: 1_700_000_001_000,
        receivedAt: 1_700_000_001_000,
        status: 'delivered',
      },
      {
        id: 'm2',
        conversation: B,
        direction: 'in',
        senderDeviceId: 1,
        text: 'a reply',
        sentAt: 1_700_000_002_000,
        receivedAt: 1_700_000_003_000,
        status: 'read',
        expiresAt: 1_700_003_603_000,
      },
    ]);
    expect(await store.outbox()).toEqual([
      {
        id: 'm3',
        recipient: B,
        content: new Uint8Array([1, 2, 3, 0, 255]),
        online: false,
        urgent: false,
        createdAt: 1_700_000_004_000,
      },
    ]);
    expect(await store.isProcessed('5b0a1c1e-0000-4000-8000-000000000001')).toBe(true);
    await store.close();
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(SQL_STORE_VERSION);
    db.close();
  });

  it('overwrites the text of removed messages in the file (secure delete)', async () => {
    const file = newFile();
    const store = await openClientStore(file, { create: true });
    const secret = `disappearing-${crypto.randomUUID()}`;
    await store.addMessage(msg({ id: 's', text: secret, expiresAt: 10 }));
    await store.close();
    expect(readFileSync(file).includes(secret)).toBe(true);
    const again = await openClientStore(file, { create: false });
    expect(await again.removeExpired(10)).toHaveLength(1);
    await again.close();
    expect(readFileSync(file).includes(secret)).toBe(false);
  });

  it('refuses another SQLite database, and a missing file, without changing anything', async () => {
    const foreign = newFile();
    const db = new Database(foreign);
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1);');
    db.close();
    const before = readFileSync(foreign);
    await expect(openClientStore(foreign, { create: false })).rejects.toThrow(StoreFormatError);
    expect(readFileSync(foreign).equals(before)).toBe(true);

    const garbage = newFile();
    writeFileSync(garbage, 'this is not a database, but it is long enough to look like a header');
    await expect(openClientStore(garbage, { create: false })).rejects.toThrow(/not a database/);
    expect(readFileSync(garbage, 'utf8')).toMatch(/^this is not a database/);

    const absent = path.join(dir, 'absent.sqlite');
    await expect(openClientStore(absent, { create: false })).rejects.toThrow();
    expect(() => statSync(absent)).toThrow();
  });
});
