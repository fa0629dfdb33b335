import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryStore, type ClientStore, type StoredMessage } from '@privcomm/client';
import { accountIdOf, deviceIdOf } from '@privcomm/client/testing';
import { ProfileError } from '../src/profile-paths.ts';
import { SqliteStore, StoreFormatError } from '../src/sqlite-store.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
const stores: Record<string, () => { store: ClientStore; close: () => void }> = {
  MemoryStore: () => ({ store: new MemoryStore(), close: () => undefined }),
  'SqliteStore (file)': () => {
    const store = SqliteStore.open(path.join(dir, `contract-${fileCounter++}.sqlite`), {
      create: true,
    });
    return { store, close: () => store.close() };
  },
};

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

/** The contract: MemoryStore is the reference; SqliteStore must behave the same. */
describe.each(Object.keys(stores))('ClientStore contract: %s', (name) => {
  const make = stores[name]!;

  it('stores and replaces the profile', async () => {
    const { store, close } = make();
    expect(await store.profile()).toBeUndefined();
    const profile = {
      relayUrl: 'http://r',
      accountId: A,
      deviceId: deviceIdOf(1),
      keysRotatedAt: 5,
    };
    await store.saveProfile(profile);
    expect(await store.profile()).toEqual(profile);
    await store.saveProfile({
      ...profile,
      deviceId: deviceIdOf(2),
      name: 'Alice',
      keysRotatedAt: 9,
    });
    expect(await store.profile()).toEqual({
      ...profile,
      deviceId: deviceIdOf(2),
      name: 'Alice',
      keysRotatedAt: 9,
    });
    close();
  });

  it('lists the conversations that have messages, deletes one, and keeps values by key', async () => {
    const { store, close } = make();
    const base = {
      direction: 'in' as const,
      sentAt: 1,
      receivedAt: 1,
      status: 'delivered' as const,
    };
    await store.addMessage({ ...base, id: 'x', conversation: A, text: 'a' });
    await store.addMessage({ ...base, id: 'y', conversation: A, text: 'b' });
    await store.addMessage({ ...base, id: 'z', conversation: B, text: 'c' });
    expect((await store.conversationIds()).sort()).toEqual([A, B].sort());
    await store.deleteConversation(A);
    expect(await store.conversationIds()).toEqual([B]);
    expect(await store.messages(A)).toEqual([]);
    expect(await store.value('k')).toBeUndefined();
    await store.saveValue('k', '{"a":1}');
    await store.saveValue('k', '{"a":2}');
    expect(await store.value('k')).toBe('{"a":2}');
    close();
  });

  it('keeps contacts in insertion order, updates in place', async () => {
    const { store, close } = make();
    expect(await store.contacts()).toEqual([]);
    await store.saveContact({ accountId: A, name: 'alice', expireSeconds: 0 });
    await store.saveContact({ accountId: B, name: 'bob', expireSeconds: 0 });
    await store.saveContact({ accountId: A, name: 'alice2', expireSeconds: 30 });
    expect(await store.contacts()).toEqual([
      { accountId: A, name: 'alice2', expireSeconds: 30 },
      { accountId: B, name: 'bob', expireSeconds: 0 },
    ]);
    expect(await store.contact(B)).toEqual({ accountId: B, name: 'bob', expireSeconds: 0 });
    expect(await store.contact('33333333-3333-4333-8333-333333333333')).toBeUndefined();
    close();
  });

  it('adds a message once per (conversation, direction, id)', async () => {
    const { store, close } = make();
    expect(await store.addMessage(msg({ id: 'm1' }))).toBe(true);
    expect(await store.addMessage(msg({ id: 'm1', text: 'other' }))).toBe(false);
    expect(await store.addMessage(msg({ id: 'm1', direction: 'out', status: 'sent' }))).toBe(true);
    expect(await store.addMessage(msg({ id: 'm1', conversation: B }))).toBe(true);
    expect(await store.messages(A)).toHaveLength(2);
    // The outgoing one wins a lookup by id; the first text was kept.
    expect(await store.message(A, 'm1')).toMatchObject({ direction: 'out' });
    expect((await store.messages(A)).find((m) => m.direction === 'in')?.text).toBe('text m1');
    expect(await store.message(A, 'nope')).toBeUndefined();
    close();
  });

  it('round-trips every optional field exactly', async () => {
    const { store, close } = make();
    const full = msg({
      id: 'full',
      senderDeviceId: 3,
      expiresAt: 99_000,
      deleted: false,
      text: 'émoji 🎉 and "quotes"',
    });
    const bare = msg({ id: 'bare', direction: 'out', status: 'sending' });
    await store.addMessage(full);
    await store.addMessage(bare);
    expect(await store.message(A, 'full')).toEqual(full);
    expect(await store.message(A, 'bare')).toEqual(bare);
    expect(Object.keys((await store.message(A, 'bare'))!).sort()).toEqual(Object.keys(bare).sort());
    close();
  });

  it('updates both directions of an id, field by field', async () => {
    const { store, close } = make();
    await store.addMessage(msg({ id: 'x', expiresAt: 50 }));
    await store.addMessage(msg({ id: 'x', direction: 'out', status: 'sent' }));
    await store.addMessage(msg({ id: 'y' }));
    await store.updateMessage(A, 'x', { status: 'read' });
    await store.updateMessage(A, 'x', { deleted: true, text: '' });
    const [inX, outX] = ['in', 'out'].map((d) =>
      (async () => (await store.messages(A)).find((m) => m.id === 'x' && m.direction === d))(),
    );
    expect(await inX).toEqual(
      msg({ id: 'x', expiresAt: 50, status: 'read', deleted: true, text: '' }),
    );
    expect(await outX).toEqual(
      msg({ id: 'x', direction: 'out', status: 'read', deleted: true, text: '' }),
    );
    expect(await store.message(A, 'y')).toEqual(msg({ id: 'y' }));
    await store.updateMessage(A, 'missing', { status: 'read' });
    expect(await store.messages(A)).toHaveLength(3);
    close();
  });

  it('lists a conversation by sentAt, then receivedAt, then insertion', async () => {
    const { store, close } = make();
    await store.addMessage(msg({ id: 'c', sentAt: 3 }));
    await store.addMessage(msg({ id: 'b2', sentAt: 2, receivedAt: 9 }));
    await store.addMessage(msg({ id: 'b1', sentAt: 2, receivedAt: 5 }));
    await store.addMessage(msg({ id: 'a', sentAt: 1 }));
    await store.addMessage(msg({ id: 'tie1', sentAt: 4, receivedAt: 4 }));
    await store.addMessage(msg({ id: 'tie2', sentAt: 4, receivedAt: 4, direction: 'out' }));
    await store.addMessage(msg({ id: 'other', conversation: B, sentAt: 0 }));
    expect((await store.messages(A)).map((m) => m.id)).toEqual([
      'a',
      'b1',
      'b2',
      'c',
      'tie1',
      'tie2',
    ]);
    expect((await store.messages(B)).map((m) => m.id)).toEqual(['other']);
    close();
  });

  it('removes expired messages and returns them', async () => {
    const { store, close } = make();
    await store.addMessage(msg({ id: 'old', expiresAt: 100 }));
    await store.addMessage(msg({ id: 'now', expiresAt: 200 }));
    await store.addMessage(msg({ id: 'later', expiresAt: 300 }));
    await store.addMessage(msg({ id: 'never' }));
    expect((await store.removeExpired(200)).map((m) => m.id)).toEqual(['old', 'now']);
    expect((await store.messages(A)).map((m) => m.id)).toEqual(['later', 'never']);
    expect(await store.removeExpired(200)).toEqual([]);
    close();
  });

  it('remembers processed envelopes, and forgets old ones', async () => {
    const { store, close } = make();
    expect(await store.isProcessed('e1')).toBe(false);
    await store.markProcessed('e1', 100, 0);
    await store.markProcessed('e2', 200, 0);
    expect(await store.isProcessed('e1')).toBe(true);
    await store.markProcessed('e3', 300, 150);
    expect(await store.isProcessed('e1')).toBe(false);
    expect(await store.isProcessed('e2')).toBe(true);
    expect(await store.isProcessed('e3')).toBe(true);
    close();
  });

  it('keeps the outbox by creation time; re-adding replaces', async () => {
    const { store, close } = make();
    const entry = (id: string, createdAt: number, byte: number) => ({
      id,
      recipient: B,
      content: new Uint8Array([byte, 0, 255]),
      online: false,
      urgent: byte % 2 === 0,
      createdAt,
    });
    await store.addOutbox(entry('o2', 20, 2));
    await store.addOutbox(entry('o1', 10, 1));
    await store.addOutbox(entry('o3', 20, 3));
    await store.addOutbox(entry('o2', 20, 4));
    expect(await store.outbox()).toEqual([
      entry('o1', 10, 1),
      entry('o2', 20, 4),
      entry('o3', 20, 3),
    ]);
    await store.removeOutbox('o1');
    await store.removeOutbox('absent');
    expect((await store.outbox()).map((e) => e.id)).toEqual(['o2', 'o3']);
    close();
  });
});

describe('SqliteStore on disk', () => {
  it('creates the file with mode 0600 and keeps everything across reopening', async () => {
    const file = path.join(dir, 'persist.sqlite');
    const first = SqliteStore.open(file, { create: true });
    await first.saveProfile({
      relayUrl: 'http://r',
      accountId: A,
      deviceId: deviceIdOf(1),
      keysRotatedAt: 1,
    });
    await first.addMessage(msg({ id: 'kept' }));
    first.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const second = SqliteStore.open(file, { create: false });
    expect((await second.profile())?.accountId).toBe(A);
    expect((await second.messages(A)).map((m) => m.id)).toEqual(['kept']);
    second.close();
  });

  it('refuses ids damaged in the file with a profile error, and changes nothing', async () => {
    const file = path.join(dir, 'damaged-ids.sqlite');
    const store = SqliteStore.open(file, { create: true });
    await store.saveProfile({
      relayUrl: 'http://r',
      accountId: A,
      deviceId: deviceIdOf(1),
      keysRotatedAt: 1,
    });
    await store.saveContact({ accountId: B, name: 'bob', expireSeconds: 0 });
    store.close();
    const db = new Database(file);
    db.prepare('UPDATE profile SET account_id = ?, device_id = ?').run('not-a-uuid', 1);
    db.prepare('UPDATE contacts SET account_id = ?').run('bob');
    db.close();
    const before = readFileSync(file);
    const damaged = SqliteStore.open(file, { create: false });
    await expect(damaged.profile()).rejects.toThrow(ProfileError);
    await expect(damaged.contacts()).rejects.toThrow(/invalid account id/);
    damaged.close();
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it('overwrites the text of removed messages in the file (secure delete)', async () => {
    const file = path.join(dir, 'secure.sqlite');
    const store = SqliteStore.open(file, { create: true });
    const secret = `disappearing-${Math.random().toString(36).slice(2)}`;
    await store.addMessage(msg({ id: 's', text: secret, expiresAt: 10 }));
    store.close();
    expect(readFileSync(file).includes(secret)).toBe(true);
    const again = SqliteStore.open(file, { create: false });
    expect(await again.removeExpired(10)).toHaveLength(1);
    again.close();
    expect(readFileSync(file).includes(secret)).toBe(false);
  });

  it('refuses another SQLite database, and a missing file, without changing anything', () => {
    const foreign = path.join(dir, 'foreign.sqlite');
    const db = new Database(foreign);
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1);');
    db.close();
    const before = readFileSync(foreign);
    expect(() => SqliteStore.open(foreign, { create: false })).toThrow(StoreFormatError);
    expect(readFileSync(foreign).equals(before)).toBe(true);

    const garbage = path.join(dir, 'garbage.sqlite');
    writeFileSync(garbage, 'this is not a database, but it is long enough to look like a header');
    expect(() => SqliteStore.open(garbage, { create: false })).toThrow(/not a database/);
    expect(readFileSync(garbage, 'utf8')).toMatch(/^this is not a database/);

    expect(() => SqliteStore.open(path.join(dir, 'absent.sqlite'), { create: false })).toThrow();
    expect(() => statSync(path.join(dir, 'absent.sqlite'))).toThrow();
  });
});
