import {
  SQL_STORE_APPLICATION_ID,
  SQL_STORE_MIGRATIONS,
  SQL_STORE_VERSION,
  SqlStore,
  StoreFormatError,
  type SqlDriver,
} from '../sql-store.ts';
import {
  MAX_HELD_ENVELOPES,
  type ClientStore,
  type HeldEnvelope,
  type OutboxEntry,
  type StoredGroup,
  type StoredMessage,
} from '../store.ts';
import { createGroup, makeChange } from '../groups/group-state.ts';
import { receiveChange, type GroupLog } from '../groups/group-log.ts';
import { accountIdOf, deviceIdOf } from './ids.ts';

/**
 * The behaviour every ClientStore must have: MemoryStore is the reference, and the SQL store
 * must match it on every driver. The suite takes the test framework's functions instead of
 * importing one, because the CLI's tests run it under Vitest and the Android app's under Jest:
 *
 *   storeContract('SqlStore on better-sqlite3', async () => ..., { describe, it, expect });
 *
 * `open` must give a new, empty store each time.
 */

/** The matchers the suites use; Vitest's and Jest's `expect` both have them. */
interface Matchers {
  toEqual(expected: unknown): unknown;
  toBe(expected: unknown): unknown;
  toBeUndefined(): unknown;
  toHaveLength(length: number): unknown;
  toMatchObject(expected: object): unknown;
  toContain(expected: unknown): unknown;
  not: Omit<Matchers, 'not' | 'rejects'>;
  rejects: {
    toThrow(expected?: unknown): Promise<unknown>;
    toBeInstanceOf(expected: unknown): Promise<unknown>;
  };
}

export interface TestFramework {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => Promise<void>): void;
  expect(actual: unknown): Matchers;
}

export interface OpenedStore {
  readonly store: ClientStore;
  close(): Promise<void>;
}

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

const GROUP_1 = '11111111111111111111111111111111';
const GROUP_2 = '22222222222222222222222222222222';
const DIST_1 = '11111111-aaaa-4aaa-8aaa-111111111111';
const DIST_2 = '22222222-aaaa-4aaa-8aaa-222222222222';

/** A group log as a device of A holds it: created by A with B, then renamed (two changes). */
const groupLog = (groupId: string, title = 'Renamed'): GroupLog => {
  const created = createGroup(groupId, A, 'Team', [B]);
  const first = receiveChange(undefined, created, A).log!;
  return receiveChange(first, makeChange(created.state, B, { action: 'title', title }), A).log!;
};

const held = (envelopeId: string, receivedAt: number): HeldEnvelope => ({
  envelopeId,
  sender: B,
  senderDeviceId: deviceIdOf(2),
  distributionId: DIST_1,
  type: 2,
  content: new Uint8Array([receivedAt % 256, 0, 255]),
  receivedAt,
});

const outboxEntry = (
  id: string,
  createdAt: number,
  byte: number,
  over: Partial<OutboxEntry> = {},
): OutboxEntry => ({
  id,
  recipient: B,
  content: new Uint8Array([byte, 0, 255]),
  online: false,
  urgent: byte % 2 === 0,
  createdAt,
  ...over,
});

export const storeContract = (
  name: string,
  open: () => Promise<OpenedStore>,
  { describe, it, expect }: TestFramework,
): void => {
  /** Runs `body` on a fresh store and closes it, whatever happens. */
  const withStore = async (body: (store: ClientStore) => Promise<void>): Promise<void> => {
    const { store, close } = await open();
    try {
      await body(store);
    } finally {
      await close();
    }
  };

  describe(`ClientStore contract: ${name}`, () => {
    it('stores and replaces the profile', () =>
      withStore(async (store) => {
        expect(await store.profile()).toBeUndefined();
        const profile = {
          relayUrl: 'http://r',
          accountId: A,
          deviceId: deviceIdOf(1),
          keysRotatedAt: 5,
        };
        await store.saveProfile(profile);
        expect(await store.profile()).toEqual(profile);
        const changed = { ...profile, deviceId: deviceIdOf(2), name: 'Alice', keysRotatedAt: 9 };
        await store.saveProfile(changed);
        expect(await store.profile()).toEqual(changed);
      }));

    it('keeps contacts in insertion order, updates in place', () =>
      withStore(async (store) => {
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
      }));

    it('adds a message once per (conversation, direction, id)', () =>
      withStore(async (store) => {
        expect(await store.addMessage(msg({ id: 'm1' }))).toBe(true);
        expect(await store.addMessage(msg({ id: 'm1', text: 'other' }))).toBe(false);
        expect(await store.addMessage(msg({ id: 'm1', direction: 'out', status: 'sent' }))).toBe(
          true,
        );
        expect(await store.addMessage(msg({ id: 'm1', conversation: B }))).toBe(true);
        expect(await store.messages(A)).toHaveLength(2);
        // The outgoing one wins a lookup by id; the first text was kept.
        expect(await store.message(A, 'm1')).toMatchObject({ direction: 'out' });
        expect((await store.messages(A)).find((m) => m.direction === 'in')?.text).toBe('text m1');
        expect(await store.message(A, 'nope')).toBeUndefined();
      }));

    it('round-trips every optional field exactly', () =>
      withStore(async (store) => {
        const full = msg({
          id: 'full',
          senderDeviceId: 3,
          expiresAt: 99_000,
          deleted: false,
          text: 'émoji 🎉 and "quotes"',
          sender: B,
          recipients: { [A]: 'read', [B]: 'failed' },
        });
        const bare = msg({ id: 'bare', direction: 'out', status: 'sending' });
        await store.addMessage(full);
        await store.addMessage(bare);
        expect(await store.message(A, 'full')).toEqual(full);
        expect(await store.message(A, 'bare')).toEqual(bare);
        expect(Object.keys((await store.message(A, 'bare'))!).sort()).toEqual(
          Object.keys(bare).sort(),
        );
      }));

    it('updates both directions of an id, field by field', () =>
      withStore(async (store) => {
        await store.addMessage(msg({ id: 'x', expiresAt: 50 }));
        await store.addMessage(msg({ id: 'x', direction: 'out', status: 'sent' }));
        await store.addMessage(msg({ id: 'y' }));
        await store.updateMessage(A, 'x', { status: 'read' });
        await store.updateMessage(A, 'x', { deleted: true, text: '' });
        const byDirection = async (direction: string) =>
          (await store.messages(A)).find((m) => m.id === 'x' && m.direction === direction);
        expect(await byDirection('in')).toEqual(
          msg({ id: 'x', expiresAt: 50, status: 'read', deleted: true, text: '' }),
        );
        expect(await byDirection('out')).toEqual(
          msg({ id: 'x', direction: 'out', status: 'read', deleted: true, text: '' }),
        );
        expect(await store.message(A, 'y')).toEqual(msg({ id: 'y' }));
        await store.updateMessage(A, 'y', { recipients: { [B]: 'delivered' } });
        expect(await store.message(A, 'y')).toEqual(
          msg({ id: 'y', recipients: { [B]: 'delivered' } }),
        );
        await store.updateMessage(A, 'missing', { status: 'read' });
        expect(await store.messages(A)).toHaveLength(3);
      }));

    it('lists a conversation by sentAt, then receivedAt, then insertion', () =>
      withStore(async (store) => {
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
      }));

    it('removes expired messages and returns them', () =>
      withStore(async (store) => {
        await store.addMessage(msg({ id: 'old', expiresAt: 100 }));
        await store.addMessage(msg({ id: 'now', expiresAt: 200 }));
        await store.addMessage(msg({ id: 'later', expiresAt: 300 }));
        await store.addMessage(msg({ id: 'never' }));
        expect((await store.removeExpired(200)).map((m) => m.id)).toEqual(['old', 'now']);
        expect((await store.messages(A)).map((m) => m.id)).toEqual(['later', 'never']);
        expect(await store.removeExpired(200)).toEqual([]);
      }));

    it('remembers processed envelopes, and forgets old ones', () =>
      withStore(async (store) => {
        expect(await store.isProcessed('e1')).toBe(false);
        await store.markProcessed('e1', 100, 0);
        await store.markProcessed('e2', 200, 0);
        expect(await store.isProcessed('e1')).toBe(true);
        await store.markProcessed('e3', 300, 150);
        expect(await store.isProcessed('e1')).toBe(false);
        expect(await store.isProcessed('e2')).toBe(true);
        expect(await store.isProcessed('e3')).toBe(true);
      }));

    it('keeps the outbox by creation time, bytes exactly; re-adding replaces', () =>
      withStore(async (store) => {
        await store.addOutbox(outboxEntry('o2', 20, 2));
        await store.addOutbox(outboxEntry('o1', 10, 1));
        await store.addOutbox(outboxEntry('o3', 20, 3));
        await store.addOutbox(outboxEntry('o2', 20, 4));
        expect(await store.outbox()).toEqual([
          outboxEntry('o1', 10, 1),
          outboxEntry('o2', 20, 4),
          outboxEntry('o3', 20, 3),
        ]);
        await store.removeOutbox('o1');
        await store.removeOutbox('absent');
        expect((await store.outbox()).map((e) => e.id)).toEqual(['o2', 'o3']);
      }));

    it('keeps when an outbox entry may go (notBefore), and drops it when re-added without', () =>
      withStore(async (store) => {
        const later = outboxEntry('copy', 30, 5, { notBefore: 1_700_000_090_000 });
        await store.addOutbox(later);
        const groupMessage = outboxEntry('group', 35, 7, { recipient: A, group: GROUP_1 });
        await store.addOutbox(groupMessage);
        expect((await store.outbox()).find((e) => e.id === 'group')).toEqual(groupMessage);
        await store.removeOutbox('group');
        await store.addOutbox(outboxEntry('now', 40, 6));
        expect(await store.outbox()).toEqual([later, outboxEntry('now', 40, 6)]);
        expect(Object.keys((await store.outbox())[1]!)).not.toContain('notBefore');
        await store.addOutbox(outboxEntry('copy', 30, 5));
        expect((await store.outbox())[0]).toEqual(outboxEntry('copy', 30, 5));
      }));

    it('lists the conversations that have messages, and deletes one', () =>
      withStore(async (store) => {
        await store.addMessage(msg({ id: 'x', conversation: A }));
        await store.addMessage(msg({ id: 'y', conversation: A }));
        await store.addMessage(msg({ id: 'z', conversation: B }));
        expect((await store.conversationIds()).sort()).toEqual([A, B].sort());
        await store.deleteConversation(A);
        expect(await store.conversationIds()).toEqual([B]);
        expect(await store.messages(A)).toEqual([]);
        expect((await store.messages(B)).map((m) => m.id)).toEqual(['z']);
      }));

    it('keeps small values by key, replacing on save', () =>
      withStore(async (store) => {
        expect(await store.value('k')).toBeUndefined();
        await store.saveValue('k', '{"a":1}');
        await store.saveValue('k', '{"a":2}');
        await store.saveValue('other', 'x');
        expect(await store.value('k')).toBe('{"a":2}');
        expect(await store.value('other')).toBe('x');
      }));

    it('keeps groups by id with their whole log, replacing on save', () =>
      withStore(async (store) => {
        expect(await store.groups()).toEqual([]);
        const second: StoredGroup = { groupId: GROUP_2, log: groupLog(GROUP_2), expireSeconds: 0 };
        const first: StoredGroup = { groupId: GROUP_1, log: groupLog(GROUP_1), expireSeconds: 60 };
        await store.saveGroup(second);
        await store.saveGroup(first);
        expect(await store.groups()).toEqual([first, second]);
        const renamed = { ...first, log: groupLog(GROUP_1, 'Again'), expireSeconds: 0 };
        await store.saveGroup(renamed);
        expect(await store.group(GROUP_1)).toEqual(renamed);
        expect(await store.group('33333333333333333333333333333333')).toBeUndefined();
        // A log that only waits for its history (no current state yet) is kept too.
        const waiting = receiveChange(
          undefined,
          makeChange(createGroup(GROUP_1, A, 'Team', [B]).state, B, { action: 'leave' }),
          B,
        ).log!;
        await store.saveGroup({ groupId: GROUP_1, log: waiting, expireSeconds: 0 });
        expect((await store.group(GROUP_1))?.log).toEqual(waiting);
      }));

    it('keeps one sender key per group; a new one forgets who had the old one', () =>
      withStore(async (store) => {
        expect(await store.ownSenderKey(GROUP_1)).toBeUndefined();
        const key = { groupId: GROUP_1, distributionId: DIST_1, createdAt: 5 };
        await store.saveOwnSenderKey(key);
        expect(await store.ownSenderKey(GROUP_1)).toEqual(key);
        expect(await store.ownSenderKeyByDistribution(DIST_1)).toEqual(key);
        await store.addSenderKeyRecipients(DIST_1, [`${B}.2`, `${B}.1`]);
        await store.addSenderKeyRecipients(DIST_1, [`${B}.1`]);
        expect(await store.senderKeyRecipients(DIST_1)).toEqual([`${B}.1`, `${B}.2`]);
        await store.removeSenderKeyRecipients(DIST_1, [`${B}.2`]);
        expect(await store.senderKeyRecipients(DIST_1)).toEqual([`${B}.1`]);
        // Saving the same key again keeps its recipients; a new key (a rotation) does not.
        await store.saveOwnSenderKey(key);
        expect(await store.senderKeyRecipients(DIST_1)).toEqual([`${B}.1`]);
        const rotated = { groupId: GROUP_1, distributionId: DIST_2, createdAt: 9 };
        await store.saveOwnSenderKey(rotated);
        expect(await store.ownSenderKey(GROUP_1)).toEqual(rotated);
        expect(await store.ownSenderKeyByDistribution(DIST_1)).toBeUndefined();
        expect(await store.senderKeyRecipients(DIST_1)).toEqual([]);
        expect(await store.senderKeyRecipients(DIST_2)).toEqual([]);
      }));

    it('holds envelopes oldest first, releases them, and keeps only the newest beyond the cap', () =>
      withStore(async (store) => {
        await store.holdEnvelope(held('e2', 20));
        await store.holdEnvelope(held('e1', 10));
        await store.holdEnvelope(held('e1', 10));
        expect(await store.heldEnvelopes()).toEqual([held('e1', 10), held('e2', 20)]);
        await store.releaseEnvelope('e1');
        expect(await store.heldEnvelopes()).toEqual([held('e2', 20)]);
        for (let i = 0; i < MAX_HELD_ENVELOPES; i += 1) {
          await store.holdEnvelope(held(`n${i}`, 100 + i));
        }
        const kept = await store.heldEnvelopes();
        expect(kept).toHaveLength(MAX_HELD_ENVELOPES);
        expect(kept[0]?.envelopeId).toBe('n0');
      }));

    it('wipes everything it keeps, and is afterwards as a new store', () =>
      withStore(async (store) => {
        const profile = {
          relayUrl: 'http://r',
          accountId: A,
          deviceId: deviceIdOf(1),
          keysRotatedAt: 5,
        };
        await store.saveProfile(profile);
        await store.saveContact({ accountId: B, name: 'bob', expireSeconds: 30 });
        await store.addMessage(msg({ id: 'm', conversation: B, expiresAt: 100 }));
        await store.markProcessed('e1', 100, 0);
        await store.addOutbox(outboxEntry('o', 10, 1));
        await store.saveValue('k', 'v');
        await store.saveGroup({ groupId: GROUP_2, log: groupLog(GROUP_2), expireSeconds: 0 });
        await store.holdEnvelope(held('h', 100));
        await store.wipe();
        expect(await store.profile()).toBeUndefined();
        expect(await store.groups()).toEqual([]);
        expect(await store.heldEnvelopes()).toEqual([]);
        expect(await store.contacts()).toEqual([]);
        expect(await store.contact(B)).toBeUndefined();
        expect(await store.conversationIds()).toEqual([]);
        expect(await store.messages(B)).toEqual([]);
        expect(await store.message(B, 'm')).toBeUndefined();
        expect(await store.removeExpired(1_000)).toEqual([]);
        expect(await store.isProcessed('e1')).toBe(false);
        expect(await store.outbox()).toEqual([]);
        expect(await store.value('k')).toBeUndefined();
        // Usable as a new one: the same ids are new again.
        expect(await store.addMessage(msg({ id: 'm', conversation: B }))).toBe(true);
        await store.saveProfile({ ...profile, deviceId: deviceIdOf(2) });
        expect((await store.profile())?.deviceId).toBe(2);
      }));

    it('applies operations in call order, even when nobody waits between them', () =>
      withStore(async (store) => {
        const ids = Array.from({ length: 20 }, (_, i) => `p${i}`);
        await Promise.all([
          ...ids.map((id, i) => store.addMessage(msg({ id, sentAt: 1, receivedAt: i }))),
          store.updateMessage(A, 'p0', { status: 'read' }),
        ]);
        expect((await store.messages(A)).map((m) => m.id)).toEqual(ids);
        expect((await store.message(A, 'p0'))?.status).toBe('read');
      }));
  });
};

/**
 * What the SQL store does beyond the contract, on a driver: its format (created, migrated,
 * refused) and damaged ids. `openDriver` must give a new, empty database each time.
 */
export const sqlStoreContract = (
  name: string,
  openDriver: () => Promise<SqlDriver>,
  { describe, it, expect }: TestFramework,
): void => {
  const withDriver = async (body: (db: SqlDriver) => Promise<void>): Promise<void> => {
    const db = await openDriver();
    try {
      await body(db);
    } finally {
      await db.close();
    }
  };

  describe(`SqlStore format: ${name}`, () => {
    it('marks an empty database as its own, and opens it again with what it stored', () =>
      withDriver(async (db) => {
        const first = await SqlStore.open(db);
        await first.saveContact({ accountId: B, name: 'bob', expireSeconds: 60 });
        expect(await db.get('PRAGMA user_version')).toEqual({ user_version: SQL_STORE_VERSION });
        expect(await db.get('PRAGMA application_id')).toEqual({
          application_id: SQL_STORE_APPLICATION_ID,
        });
        const again = await SqlStore.open(db);
        expect(await again.contacts()).toEqual([{ accountId: B, name: 'bob', expireSeconds: 60 }]);
      }));

    it('refuses a database that holds something else, without touching it', () =>
      withDriver(async (db) => {
        await db.exec('CREATE TABLE notes (body TEXT)');
        await expect(SqlStore.open(db)).rejects.toBeInstanceOf(StoreFormatError);
        expect(await db.get('SELECT count(*) AS n FROM sqlite_master')).toEqual({ n: 1 });
        expect(await db.get('PRAGMA user_version')).toEqual({ user_version: 0 });
      }));

    it('refuses a newer format, saying to update', () =>
      withDriver(async (db) => {
        await SqlStore.open(db);
        await db.exec(`PRAGMA user_version = ${SQL_STORE_VERSION + 1}`);
        await expect(SqlStore.open(db)).rejects.toThrow(/newer.*update privcomm/);
      }));

    it('brings every older format up to date, keeping its rows', async () => {
      for (let version = 1; version < SQL_STORE_VERSION; version += 1) {
        await withDriver(async (db) => {
          for (const migration of SQL_STORE_MIGRATIONS.slice(0, version)) await db.exec(migration);
          await db.exec(
            `PRAGMA application_id = ${SQL_STORE_APPLICATION_ID}; PRAGMA user_version = ${version};`,
          );
          await db.run(`INSERT INTO contacts (account_id, name, expire_seconds) VALUES (?, ?, ?)`, [
            A,
            'alice',
            0,
          ]);
          // Every format since the first has these outbox columns.
          await db.run(
            `INSERT INTO outbox (id, recipient, content, online, urgent, created_at)
             VALUES (?, ?, ?, ?, ?, ?)`,
            ['o', B, new Uint8Array([1, 0, 255]), 0, 0, 7],
          );
          const store = await SqlStore.open(db);
          expect(await store.contacts()).toEqual([
            { accountId: A, name: 'alice', expireSeconds: 0 },
          ]);
          expect(await store.outbox()).toEqual([outboxEntry('o', 7, 1, { urgent: false })]);
          const waiting = outboxEntry('w', 8, 2, { notBefore: 99 });
          await store.addOutbox(waiting);
          expect((await store.outbox())[1]).toEqual(waiting);
          await store.saveValue('k', 'v');
          expect(await store.value('k')).toBe('v');
          const group = { groupId: GROUP_1, log: groupLog(GROUP_1), expireSeconds: 0 };
          await store.saveGroup(group);
          expect(await store.groups()).toEqual([group]);
          const old = msg({ id: 'from-a-contact', sender: B });
          await store.addMessage(old);
          expect(await store.message(A, old.id)).toEqual(old);
          expect(await db.get('PRAGMA user_version')).toEqual({ user_version: SQL_STORE_VERSION });
        });
      }
    });

    it('wipes to an empty database of its own format, with no free pages left', () =>
      withDriver(async (db) => {
        const store = await SqlStore.open(db);
        for (let i = 0; i < 50; i += 1)
          await store.addMessage(msg({ id: `m${i}`, text: 'secret '.repeat(200) }));
        await store.saveValue('k', 'v');
        await store.wipe();
        const tables = await db.all<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        );
        expect(tables.length >= 6).toBe(true);
        for (const { name } of tables)
          expect(await db.get(`SELECT count(*) AS n FROM "${name}"`)).toEqual({ n: 0 });
        // VACUUM ran: the pages the rows filled are gone from the file, not on its free list.
        expect(await db.get('PRAGMA freelist_count')).toEqual({ freelist_count: 0 });
        expect(await db.get('PRAGMA user_version')).toEqual({ user_version: SQL_STORE_VERSION });
        const again = await SqlStore.open(db);
        expect(await again.conversationIds()).toEqual([]);
      }));

    it('refuses ids damaged in the database with StoreFormatError, and changes nothing', () =>
      withDriver(async (db) => {
        const store = await SqlStore.open(db);
        await store.saveProfile({
          relayUrl: 'http://r',
          accountId: A,
          deviceId: deviceIdOf(1),
          keysRotatedAt: 1,
        });
        await store.saveContact({ accountId: B, name: 'bob', expireSeconds: 0 });
        await store.addOutbox(outboxEntry('o', 1, 1));
        await db.run('UPDATE profile SET account_id = ?', ['not-a-uuid']);
        await db.run('UPDATE contacts SET account_id = ?', ['bob']);
        await db.run('UPDATE outbox SET recipient = ?', ['bob']);
        await expect(store.profile()).rejects.toThrow(/invalid account id/);
        await expect(store.contacts()).rejects.toBeInstanceOf(StoreFormatError);
        await expect(store.outbox()).rejects.toBeInstanceOf(StoreFormatError);
        await db.run('UPDATE profile SET account_id = ?, device_id = ?', [A, 0]);
        await expect(store.profile()).rejects.toThrow(/invalid device id/);
        expect(await db.get('SELECT account_id FROM contacts')).toEqual({ account_id: 'bob' });
      }));

    it('refuses damaged message recipients with StoreFormatError', () =>
      withDriver(async (db) => {
        const store = await SqlStore.open(db);
        await store.addMessage(msg({ id: 'g', direction: 'out', recipients: { [B]: 'sent' } }));
        for (const damaged of ['not json', '{"bob":"sent"}', `{"${B}":"seen"}`, 'null']) {
          await db.run('UPDATE messages SET recipients = ?', [damaged]);
          await expect(store.message(A, 'g')).rejects.toThrow(/damaged message recipients/);
        }
      }));

    it('refuses a damaged group log with StoreFormatError', () =>
      withDriver(async (db) => {
        const store = await SqlStore.open(db);
        await store.saveGroup({ groupId: GROUP_1, log: groupLog(GROUP_1), expireSeconds: 0 });
        await db.run('UPDATE groups SET log = ?', ['{"groupId":"x"}']);
        await expect(store.groups()).rejects.toBeInstanceOf(StoreFormatError);
        await db.run('UPDATE groups SET log = ?', ['not json']);
        await expect(store.group(GROUP_1)).rejects.toThrow(/damaged group/);
      }));
  });
};
