import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeContent,
  GroupError,
  makeChange,
  MemoryStore,
  PrivcommClient,
  type AccountId,
  type ClientEvent,
  type SocketLike,
  type Transport,
} from '@privcomm/client';
import { createTestDatabase, startRelay, type TestRelay } from '@privcomm/server/testing';
import { memorySigner } from './support/memory-signer.ts';
import { openNodeEngine, SEALED_SENDER_V2_AT_REST } from '../src/index.ts';

/**
 * Groups in the client core with the real engine (libsignal) against a real relay: changes travel
 * pairwise, end to end encrypted, and every member's device converges on the same state.
 */
let relay: TestRelay;
let drop: () => Promise<void>;
let databaseUrl: string;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  databaseUrl = database.url;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

/** Set to make the next multi-recipient upload fail as if the network were down. */
let failNextUpload = false;

const transport = (): Transport => ({
  relayUrl: relay.url,
  fetch: (url, init) => {
    if (failNextUpload && String(url).includes('/v1/messages/multi')) {
      failNextUpload = false;
      return Promise.reject(new TypeError('fetch failed'));
    }
    return fetch(url, init);
  },
  openSocket: (url) => new WebSocket(url) as unknown as SocketLike,
});

interface TestClient {
  client: PrivcommClient;
  events: ClientEvent[];
  id: AccountId;
}

const register = async (name: string): Promise<TestClient> => {
  const client = await PrivcommClient.open({
    transport: transport(),
    engine: await openNodeEngine(':memory:'),
    store: new MemoryStore(),
    signer: memorySigner(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    syncCopyDelay: { minMs: 0, maxMs: 0 },
  });
  const events: ClientEvent[] = [];
  client.subscribe((event) => events.push(event));
  await client.register({ name });
  return { client, events, id: client.profile!.accountId };
};

/** Connects, waits until the queue is empty and `until` holds, disconnects. */
const receive = async (test: TestClient, until: () => boolean = () => true): Promise<void> => {
  const start = test.events.length;
  await test.client.connect();
  await expect
    .poll(() => test.events.slice(start).some((e) => e.type === 'queue-empty') && until(), {
      timeout: 10_000,
    })
    .toBe(true);
  await test.client.disconnect();
};

/** How many multi-recipient uploads the relay answered so far. */
const multiUploads = async (): Promise<number> => {
  const metric = await relay.relay.context.metrics.httpRequests.get();
  return metric.values
    .filter((v) => v.labels.route === '/v1/messages/multi')
    .reduce((sum, v) => sum + v.value, 0);
};

const membersOf = async (test: TestClient, title: string) =>
  (await test.client.groupInfo(title)).members.map((m) => [m.accountId, m.admin]);

describe('groups in the client core through a real relay', () => {
  it('members converge on every change; non-admins and removed members cannot change it', async () => {
    const [alice, bob, carol, dave] = await Promise.all(
      ['alice', 'bob', 'carol', 'dave'].map(register),
    );
    const group = await alice!.client.createGroup('Family', [bob!.id, carol!.id]);
    expect(group).toMatchObject({ title: 'Family', version: 1, member: true, admin: true });

    await receive(bob!, () => bob!.events.some((e) => e.type === 'group'));
    await receive(carol!, () => carol!.events.some((e) => e.type === 'group'));
    expect(await membersOf(bob!, 'Family')).toEqual(await membersOf(alice!, 'Family'));
    expect((await bob!.client.groupInfo('Family')).admin).toBe(false);

    // Bob is no admin: his client refuses to add, and Alice's refuses a change forged by him.
    await expect(bob!.client.addToGroup('Family', [dave!.id])).rejects.toBeInstanceOf(GroupError);
    const asAdmin = makeChange(await alice!.client.groupInfo('Family'), alice!.id, {
      action: 'add',
      accounts: [dave!.id],
    });
    // A pairwise message from Bob carrying a change that claims Alice as its author.
    await bob!.client['sender'].send(
      alice!.id,
      encodeContent({ kind: 'group-change', id: 'forged-1', sentAt: 1, change: asAdmin }),
    );
    // And one with Bob as author (a non-admin's add).
    await bob!.client['sender'].send(
      alice!.id,
      encodeContent({
        kind: 'group-change',
        id: 'forged-2',
        sentAt: 1,
        change: { ...asAdmin, author: bob!.id },
      }),
    );
    await receive(alice!);
    expect((await alice!.client.groupInfo('Family')).version).toBe(1);

    // Any member renames; Alice promotes Bob, who then adds Dave; Carol is offline meanwhile.
    await bob!.client.setGroupTitle('Family', 'The Family');
    await receive(alice!, () => alice!.events.some((e) => e.type === 'group'));
    await alice!.client.promoteInGroup('The Family', [bob!.id]);
    await receive(bob!, () => bob!.events.filter((e) => e.type === 'group').length >= 3);
    await bob!.client.addToGroup('The Family', [dave!.id]);
    await receive(dave!, () => dave!.events.some((e) => e.type === 'group'));
    expect(await dave!.client.groupInfo('The Family')).toMatchObject({ version: 4, member: true });

    // Carol catches up from the queued changes, whatever order they come in.
    await receive(carol!);
    await receive(alice!);
    const expected = await membersOf(alice!, 'The Family');
    for (const member of [bob!, carol!, dave!]) {
      expect(await membersOf(member, 'The Family')).toEqual(expected);
      expect((await member.client.groupInfo('The Family')).version).toBe(4);
    }

    // Alice removes Carol: Carol learns it; her later change is refused by everyone.
    await alice!.client.removeFromGroup('The Family', [carol!.id]);
    const seen = carol!.events.length;
    await receive(carol!, () => carol!.events.slice(seen).some((e) => e.type === 'group'));
    expect((await carol!.client.groupInfo('The Family')).member).toBe(false);
    await expect(carol!.client.setGroupTitle('The Family', 'Mine')).rejects.toThrow(
      /no longer a member/,
    );
    const removedState = await carol!.client.groupInfo('The Family');
    // A modified client could still send one: a rename on the state after her removal.
    await receive(bob!);
    const carolsRename = {
      ...makeChange(await bob!.client.groupInfo('The Family'), bob!.id, {
        action: 'title',
        title: 'Hijacked',
      }),
      author: carol!.id,
    };
    await carol!.client['sender'].send(
      bob!.id,
      encodeContent({ kind: 'group-change', id: 'late', sentAt: 1, change: carolsRename }),
    );
    await receive(bob!);
    expect((await bob!.client.groupInfo('The Family')).title).toBe('The Family');
    for (const member of [alice!, bob!, dave!]) {
      await receive(member);
      expect(
        (await member.client.groupInfo('The Family')).members.map((m) => m.accountId),
      ).not.toContain(carol!.id);
    }

    // The relay's database holds no group id, title or member list.
    const { Client } = await import('pg');
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const tables = await db.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`,
      );
      const dump: string[] = [];
      for (const { table_name } of tables.rows) {
        const rows = await db.query(`SELECT * FROM "${table_name}"`);
        dump.push(JSON.stringify(rows.rows));
      }
      const all = dump.join('\n');
      expect(all).not.toContain(removedState.groupId);
      expect(all).not.toContain('The Family');
    } finally {
      await db.end();
    }
  }, 120_000);

  it('talks with sender keys in one upload; after a removal the removed member cannot decrypt', async () => {
    const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map(register));
    await alice!.client.createGroup('Team', [bob!.id, carol!.id]);
    await Promise.all(
      [bob!, carol!].map((m) => receive(m, () => m.events.some((e) => e.type === 'group'))),
    );

    const uploadsBefore = await multiUploads();
    const sent = await alice!.client.sendGroupText('Team', 'hello team');
    expect(sent.status).toBe('sent');
    expect(await multiUploads()).toBe(uploadsBefore + 1);
    for (const member of [bob!, carol!]) {
      await receive(member, () => member.events.some((e) => e.type === 'message'));
      const [received] = await member.client.groupHistory('Team');
      expect(received).toMatchObject({
        text: 'hello team',
        direction: 'in',
        sender: alice!.id,
        conversation: sent.conversation,
      });
    }
    // Unreachable relay: the message stays in the outbox ("sending") and goes out with the next
    // flush, once.
    failNextUpload = true;
    await expect(bob!.client.sendGroupText('Team', 'hi from bob')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    expect((await bob!.client.groupHistory('Team')).at(-1)).toMatchObject({
      text: 'hi from bob',
      status: 'sending',
    });
    expect(await bob!.client.flushOutbox()).toBe(1);
    expect((await bob!.client.groupHistory('Team')).at(-1)?.status).toBe('sent');
    await receive(alice!, () => alice!.events.some((e) => e.type === 'message'));
    expect((await alice!.client.groupHistory('Team')).map((m) => [m.direction, m.text])).toEqual([
      ['out', 'hello team'],
      ['in', 'hi from bob'],
    ]);

    // Delete for everyone (the author only) and the disappearing timer, in the group.
    await alice!.client.deleteInGroup('Team', sent.id);
    await alice!.client.setGroupDisappearing('Team', 3600);
    await receive(bob!, () => bob!.events.some((e) => e.type === 'timer'));
    const [deletedAtBob] = await bob!.client.groupHistory('Team');
    expect(deletedAtBob).toMatchObject({ id: sent.id, deleted: true, text: '' });
    expect((await bob!.client.groupInfo('Team')).expireSeconds).toBe(3600);
    // Bob cannot delete Alice's message for everyone: his client has no such message of his.
    await expect(bob!.client.deleteInGroup('Team', sent.id)).rejects.toThrow(/sent by you/);

    await alice!.client.removeFromGroup('Team', [carol!.id]);
    await receive(bob!, () => bob!.events.filter((e) => e.type === 'group').length >= 2);
    await alice!.client.sendGroupText('Team', 'after carol left');
    // Bob's copy of Alice's new key is lost (its pairwise envelope deleted on the relay): the
    // group message is kept, not dropped; Bob asks Alice for the key and then reads it.
    const { Client } = await import('pg');
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      // Every envelope but the group message's share (type 3, sealed at rest by the relay).
      const deleted = await db.query('DELETE FROM envelopes WHERE account_id = $1 AND type <> $2', [
        bob!.id,
        SEALED_SENDER_V2_AT_REST,
      ]);
      expect(deleted.rowCount).toBe(1);
    } finally {
      await db.end();
    }
    await receive(bob!);
    expect(
      bob!.events.some((e) => e.type === 'message' && e.message.text === 'after carol left'),
    ).toBe(false);
    expect(await bob!.client['deps'].store.heldEnvelopes()).toHaveLength(1);
    await receive(alice!);
    await receive(bob!, () =>
      bob!.events.some((e) => e.type === 'message' && e.message.text === 'after carol left'),
    );
    expect(await bob!.client['deps'].store.heldEnvelopes()).toEqual([]);
    // A member's forged "delete for everyone" of another's message changes nothing there.
    const late = (await alice!.client.groupHistory('Team')).find(
      (m) => m.text === 'after carol left',
    );
    await bob!.client['groupMessages'].send(sent.conversation, {
      kind: 'delete',
      id: 'forged-delete',
      sentAt: 2,
      target: late!.id,
    });
    await receive(alice!);
    expect(await alice!.client['deps'].store.message(sent.conversation, late!.id)).toMatchObject({
      text: 'after carol left',
    });
    expect(
      (await alice!.client['deps'].store.message(sent.conversation, late!.id))?.deleted,
    ).toBeUndefined();

    // Carol is not among the recipients of the new upload. Even given a ciphertext under Alice's
    // new key (sealed to her, as a member would be), her client cannot read it: she asks Alice
    // for the key, and Alice refuses a non-member.
    const engine = alice!.client['deps'].engine;
    const key = await alice!.client['deps'].store.ownSenderKey(sent.conversation);
    const carolDevice = { accountId: carol!.id, deviceId: 1 as never };
    await alice!.client['sender'].establish(carol!.id, '*');
    const leaked = await engine.groupEncrypt(
      key!.distributionId,
      [carolDevice],
      encodeContent({
        kind: 'group',
        id: 'secret',
        sentAt: 1,
        groupId: sent.conversation,
        content: { kind: 'text', id: 'secret', sentAt: 1, text: 'not for carol' },
      }),
    );
    expect((await alice!.client['api'].sendMultiRecipient(leaked)).kind).toBe('stored');
    await receive(carol!);
    const carolTexts = (await carol!.client.groupHistory('Team')).map((m) => m.text);
    // Alice's first message was deleted for everyone before Carol read it.
    expect(carolTexts).toEqual(['', 'hi from bob']);
    // Kept, waiting for a key that never comes: Alice refuses her request.
    expect(await carol!.client['deps'].store.heldEnvelopes()).toHaveLength(1);
    await receive(alice!);
    await receive(carol!);
    expect((await carol!.client.groupHistory('Team')).map((m) => m.text)).toEqual(carolTexts);
  }, 120_000);
});
