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
import { openNodeEngine } from '../src/index.ts';

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

const transport = (): Transport => ({
  relayUrl: relay.url,
  fetch: (url, init) => fetch(url, init),
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
});
