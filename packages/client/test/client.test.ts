import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, MAX_TEXT_BYTES } from '@privcomm/wire';
import { PrivcommClient, safetyNumberCode, type ClientDeps } from '../src/client.ts';
import { textBytes } from '../src/content.ts';
import { receiveChange } from '../src/groups/group-log.ts';
import { createGroup } from '../src/groups/group-state.ts';
import { MemoryStore } from '../src/store.ts';
import { FakeEngine, FakeSocket, settle } from './support/fakes.ts';
import { accountIdOf, deviceIdOf } from '../src/testing/ids.ts';

const ALICE = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');

/** A client of a relay that cannot be reached: every request it makes is recorded. */
const offlineClient = async () => {
  const store = new MemoryStore();
  await store.saveProfile({
    relayUrl: 'http://relay.test',
    accountId: ALICE,
    deviceId: deviceIdOf(1),
    keysRotatedAt: 0,
  });
  const requests: string[] = [];
  const deps = offlineDeps(store, requests);
  // `deps` opens another client on the same store (what a restart of the app does).
  return { client: await PrivcommClient.open(deps), store, requests, deps };
};

const offlineDeps = (store: MemoryStore, requests: string[]): ClientDeps => ({
  transport: {
    relayUrl: 'http://relay.test',
    fetch: async (url) => {
      requests.push(url);
      throw new Error('connection refused');
    },
    openSocket: () => {
      throw new Error('no socket');
    },
  },
  engine: new FakeEngine({ accountId: ALICE, deviceId: deviceIdOf(1) }),
  store,
  signer: { publicKey: async () => new Uint8Array(32), sign: async () => new Uint8Array(64) },
  randomBytes: (n) => crypto.getRandomValues(new Uint8Array(n)),
  sleep: async () => undefined,
});

describe('text size limit', () => {
  it('counts UTF-8 bytes of the JSON string', () => {
    expect(textBytes('abc')).toBe(3);
    expect(textBytes('é👋')).toBe(6);
    expect(textBytes('a\nb"')).toBe(6);
  });

  it('refuses a too-long text before storing or sending anything, saying how long a text may be', async () => {
    const { client, store, requests } = await offlineClient();
    const text = 'é'.repeat(MAX_TEXT_BYTES / 2) + 'x';
    await expect(client.sendText(BOB, text)).rejects.toMatchObject({
      code: 'TEXT_TOO_LONG',
      message: expect.stringContaining(`at most ${MAX_TEXT_BYTES} bytes`),
    });
    expect(await store.messages(BOB)).toEqual([]);
    expect(await store.outbox()).toEqual([]);
    expect(requests).toEqual([]);
  });

  it('keeps a text of exactly the limit, to be sent when the relay is back', async () => {
    const { client, store, requests } = await offlineClient();
    const text = 'é'.repeat(MAX_TEXT_BYTES / 2);
    await expect(client.sendText(BOB, text)).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect(requests.length).toBeGreaterThan(0);
    expect((await store.messages(BOB)).map((m) => m.status)).toEqual(['sending']);
    expect(await store.outbox()).toHaveLength(1);
  });
});

const STRANGER = accountIdOf('5e1f0000-0000-4000-8000-00000000000e');

const received = (conversation: string, id: string, text: string, at: number) => ({
  id,
  conversation,
  direction: 'in' as const,
  text,
  sentAt: at,
  receivedAt: at,
  status: 'delivered' as const,
});

describe('settings, kept in the store and honoured by the core', () => {
  it('read receipts off: reading marks the messages read and sends nothing; typing off sends nothing', async () => {
    const { client, store, requests, deps } = await offlineClient();
    await store.addMessage(received(STRANGER, 'r1', 'who?', 1));
    // A message request is read without a receipt: nothing goes to the relay.
    expect(await client.markRead(STRANGER)).toBe(1);
    expect(requests).toEqual([]);
    await client.addContact('Bob', BOB);
    await store.addMessage(received(BOB, 'm1', 'hi', 1));
    // On (the default): the read receipt must go first, and the relay cannot be reached.
    await expect(client.markRead(BOB)).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect((await store.messages(BOB))[0]?.status).toBe('delivered');
    const sentBefore = requests.length;

    const events: string[] = [];
    client.subscribe((event) => events.push(event.type));
    await client.updateSettings({ readReceipts: false, typingIndicators: false });
    expect(events).toEqual(['settings']);
    expect(await client.markRead(BOB)).toBe(1);
    expect((await store.messages(BOB))[0]?.status).toBe('read');
    await client.sendTyping(BOB, true);
    expect(requests.length).toBe(sentBefore);

    // Stored: a client opened again on the same store has them.
    const again = await PrivcommClient.open(deps);
    expect(again.settings).toEqual({
      readReceipts: false,
      typingIndicators: false,
      relayOnlyCalls: false,
    });
    expect((await again.snapshot()).settings.readReceipts).toBe(false);
  });
});

describe('conversations in the snapshot', () => {
  it('carry the unread count and the latest message; a stranger who wrote is a message request until accepted, blocked or deleted', async () => {
    const { client, store, deps } = await offlineClient();
    await client.addContact('Bob', BOB);
    await store.addMessage(received(BOB, 'b1', 'one', 1));
    await store.addMessage(received(BOB, 'b2', 'two', 2));
    await store.addMessage(received(STRANGER, 's1', 'hello?', 3));
    const { conversations } = await client.snapshot();
    expect(conversations).toEqual([
      expect.objectContaining({ accountId: STRANGER, request: true, unread: 1 }),
      expect.objectContaining({ accountId: BOB, name: 'Bob', request: false, unread: 2 }),
    ]);
    expect(conversations[0]?.name).toBeUndefined();
    expect(conversations[1]?.lastMessage?.text).toBe('two');

    await client.addContact('Stranger', STRANGER);
    expect((await client.snapshot()).conversations[0]).toMatchObject({ request: false });

    await client.block(STRANGER);
    const after = await client.snapshot();
    expect(after.conversations.map((c) => c.accountId)).toEqual([BOB]);
    expect(after.blocked).toEqual([STRANGER]);
    expect(await store.messages(STRANGER)).toEqual([]);
    const again = await PrivcommClient.open(deps);
    expect((await again.snapshot()).blocked).toEqual([STRANGER]);

    await client.deleteConversation(BOB);
    expect((await client.snapshot()).conversations).toEqual([
      expect.objectContaining({ accountId: BOB, unread: 0 }),
    ]);
  });
});

describe('retrying a message', () => {
  it('sends a failed message again under its own id, through the outbox; refuses one that was sent', async () => {
    const { client, store } = await offlineClient();
    await store.addMessage({
      id: 'f1',
      conversation: BOB,
      direction: 'out',
      text: 'again',
      sentAt: 5,
      receivedAt: 5,
      status: 'failed',
    });
    await expect(client.retryMessage(BOB, 'f1')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    expect(await store.message(BOB, 'f1')).toMatchObject({ status: 'sending', text: 'again' });
    expect((await store.outbox()).map((e) => e.id)).toEqual(['f1']);
    await expect(client.retryMessage(BOB, 'nope')).rejects.toMatchObject({
      code: 'NOT_RETRYABLE',
    });
    await store.updateMessage(BOB, 'f1', { status: 'sent' });
    await expect(client.retryMessage(BOB, 'f1')).rejects.toMatchObject({
      code: 'NOT_RETRYABLE',
    });
  });
});

describe('groups: read receipts and retries', () => {
  const GROUP = '00112233445566778899aabbccddeeff';
  const withGroup = async () => {
    const offline = await offlineClient();
    const { log } = receiveChange(
      undefined,
      createGroup(GROUP, ALICE, 'Team', [BOB, STRANGER]),
      ALICE,
    );
    await offline.store.saveGroup({ groupId: GROUP, log: log!, expireSeconds: 0 });
    return offline;
  };

  it('reading a group sends read receipts to the authors first; with them off, it sends none', async () => {
    const { client, store, requests } = await withGroup();
    await store.addMessage({ ...received(GROUP, 'g1', 'hi all', 1), sender: BOB });
    await expect(client.markGroupRead('Team')).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect((await store.messages(GROUP))[0]?.status).toBe('delivered');
    await client.updateSettings({ readReceipts: false });
    const sentBefore = requests.length;
    expect(await client.markGroupRead('Team')).toBe(1);
    expect((await store.messages(GROUP))[0]?.status).toBe('read');
    expect(requests.length).toBe(sentBefore);
  });

  it('the snapshot’s groups carry the latest message with its receipts per member', async () => {
    const { client, store } = await withGroup();
    const recipients = { [BOB]: 'read', [STRANGER]: 'delivered' } as const;
    await store.addMessage({
      ...received(GROUP, 'g2', 'mine', 2),
      direction: 'out',
      status: 'delivered',
      recipients,
    });
    const [group] = (await client.snapshot()).groups;
    expect(group?.lastMessage).toMatchObject({ id: 'g2', status: 'delivered', recipients });
  });

  it('a retry of a text that reached some members is no new send to all; one that reached nobody goes through the outbox', async () => {
    const { client, store } = await withGroup();
    const text = (id: string, recipients?: Record<string, 'failed' | 'sent'>) => ({
      id,
      conversation: GROUP,
      direction: 'out' as const,
      text: 'again',
      sentAt: 5,
      receivedAt: 5,
      status: 'failed' as const,
      ...(recipients === undefined ? {} : { recipients }),
    });
    await store.addMessage(text('partly', { [BOB]: 'sent', [STRANGER]: 'failed' }));
    await expect(client.retryMessage(GROUP, 'partly')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    // Still failed for that member, and not queued for everyone.
    expect(await store.message(GROUP, 'partly')).toMatchObject({
      status: 'failed',
      recipients: { [BOB]: 'sent', [STRANGER]: 'failed' },
    });
    expect(await store.outbox()).toEqual([]);

    await store.addMessage(text('nobody'));
    await expect(client.retryMessage(GROUP, 'nobody')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    expect(await store.message(GROUP, 'nobody')).toMatchObject({ status: 'sending' });
    expect((await store.outbox()).map((e) => [e.id, e.group])).toEqual([['nobody', GROUP]]);
  });
});

describe('contact links of a client', () => {
  it('give this account’s link, add a contact from another’s, refuse its own and another relay’s', async () => {
    const { client } = await offlineClient();
    const own = client.contactLink();
    expect(own).toBe(`privcomm://contact/${ALICE}?relay=http%3A%2F%2Frelay.test`);
    await expect(client.addContactFromLink(own, 'me')).rejects.toMatchObject({
      code: 'INVALID_CONTACT_LINK',
    });
    const bobs = `privcomm://contact/${BOB}?relay=http%3A%2F%2Frelay.test%2F#Bob`;
    expect(await client.addContactFromLink(bobs)).toMatchObject({ accountId: BOB, name: 'Bob' });
    expect(await client.addContactFromLink(bobs, 'Bobby')).toMatchObject({ name: 'Bobby' });
    await expect(
      client.addContactFromLink(`privcomm://contact/${BOB}?relay=https%3A%2F%2Fother.test`),
    ).rejects.toMatchObject({ code: 'OTHER_RELAY', message: /same relay/ });
    await expect(
      client.addContactFromLink(`privcomm://contact/${BOB}?relay=http%3A%2F%2Frelay.test`),
    ).rejects.toMatchObject({ code: 'INVALID_CONTACT_LINK', message: /give the contact a name/ });
  });
});

describe('safety number by QR code', () => {
  it("marks the contact verified when the scanned code is this side's, and refuses another", async () => {
    const verified = new Map<string, boolean>();
    const digits = '12345'.repeat(12);
    const engine = Object.assign(new FakeEngine({ accountId: ALICE, deviceId: deviceIdOf(1) }), {
      identityState: async (accountId: string) => ({
        identityKey: new Uint8Array(33),
        verified: verified.get(accountId) ?? false,
        changed: false,
      }),
      safetyNumber: async () => ({ digits, scannable: new Uint8Array(0) }),
      setVerified: async (accountId: string, on: boolean) => void verified.set(accountId, on),
    });
    const { deps } = await offlineClient();
    const client = await PrivcommClient.open({ ...deps, engine });
    await expect(client.verifyScanned(BOB, safetyNumberCode('1'.repeat(60)))).rejects.toMatchObject(
      { code: 'SAFETY_NUMBER_MISMATCH' },
    );
    expect(verified.get(BOB)).toBeUndefined();
    await client.verifyScanned(BOB, ` ${safetyNumberCode(digits)}\n`);
    expect(verified.get(BOB)).toBe(true);
  });
});

describe('wipe', () => {
  it('erases the engine, then the store, and asks the relay nothing', async () => {
    const { client, store, requests, deps } = await offlineClient();
    await expect(client.sendText(BOB, 'kept in the outbox')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    expect(await store.outbox()).toHaveLength(1);
    const order: string[] = [];
    const engine = deps.engine as FakeEngine;
    const engineWipe = engine.wipe.bind(engine);
    engine.wipe = async () => {
      order.push('engine');
      await engineWipe();
    };
    const storeWipe = store.wipe.bind(store);
    store.wipe = async () => {
      order.push('store');
      await storeWipe();
    };
    const asked = requests.length;
    await client.wipe();
    expect(order).toEqual(['engine', 'store']);
    expect(requests.length).toBe(asked);
    expect(await store.profile()).toBeUndefined();
    expect(await store.outbox()).toEqual([]);
    expect(await store.conversationIds()).toEqual([]);
    expect(client.profile).toBeUndefined();
  });
});

describe('login on the socket', () => {
  /**
   * A client of a scripted relay: each socket it opens is handed to `onSocket`; its HTTP requests
   * are recorded (with their token) and answered by `answer` (JSON), 503 otherwise.
   */
  const scriptedClient = async (
    onSocket: (socket: FakeSocket, url: string) => void,
    answer: (method: string, path: string) => unknown,
  ) => {
    const store = new MemoryStore();
    await store.saveProfile({
      relayUrl: 'http://relay.test',
      accountId: ALICE,
      deviceId: deviceIdOf(1),
      keysRotatedAt: Date.now(),
    });
    const requests: string[] = [];
    const deps: ClientDeps = {
      ...offlineDeps(store, []),
      transport: {
        relayUrl: 'http://relay.test',
        fetch: async (url, init) => {
          const path = new URL(url).pathname;
          const authorization = new Headers(init.headers).get('authorization');
          requests.push(`${init.method} ${path}${authorization ? ` (${authorization})` : ''}`);
          const body = answer(init.method ?? 'GET', path);
          return new Response(JSON.stringify(body ?? {}), {
            status: body === undefined ? 503 : 200,
            headers: { 'content-type': 'application/json' },
          });
        },
        openSocket: (url) => {
          const socket = new FakeSocket();
          setImmediate(() => {
            socket.onopen?.({});
            onSocket(socket, url);
          });
          return socket;
        },
      },
    };
    return { client: await PrivcommClient.open(deps), requests };
  };
  const keyCounts = { preKeys: 100, kyberPreKeys: 100 };
  const expiresAt = () => new Date(Date.now() + 300_000).toISOString();

  it('logs in by signature on the socket, with no HTTP login, and uses the token it answers for HTTP', async () => {
    const urls: string[] = [];
    const { client, requests } = await scriptedClient(
      (socket, url) => {
        urls.push(url);
        socket.request(1, 'auth.challenge', { nonce: 'A'.repeat(43) + '=' });
        void settle().then(() => {
          const auth = socket.sent[0] as { id: number; body: Record<string, unknown> };
          expect(auth.body).toEqual({
            accountId: ALICE,
            deviceId: 1,
            signature: expect.any(String),
          });
          socket.receive(
            JSON.stringify({
              type: 'response',
              id: auth.id,
              status: 200,
              body: { accountId: ALICE, deviceId: 1, token: 'from-socket', expiresAt: expiresAt() },
            }),
          );
        });
      },
      (method, path) => (method === 'GET' && path === '/v1/keys/count' ? keyCounts : undefined),
    );
    await client.connect();
    expect(urls).toEqual(['ws://relay.test/v1/websocket?login=signature']);
    expect(requests).toEqual(['GET /v1/keys/count (Bearer from-socket)']);
  });

  it('falls back to the HTTP login when the relay closes the socket unchallenged (a relay without it), once', async () => {
    const urls: string[] = [];
    const auths: unknown[] = [];
    const { client, requests } = await scriptedClient(
      (socket, url) => {
        urls.push(url);
        if (url.includes('login=signature')) {
          socket.drop(CLOSE_CODES.TIMEOUT, 'authentication timeout');
          return;
        }
        const auth = socket.sent[0] as { id: number; body: unknown };
        auths.push(auth.body);
        socket.receive(JSON.stringify({ type: 'response', id: auth.id, status: 200, body: {} }));
      },
      (method, path) => {
        if (path === '/v1/auth/challenge')
          return { nonce: 'A'.repeat(43) + '=', expiresAt: expiresAt() };
        if (path === '/v1/auth/token') return { token: 'from-http', expiresAt: expiresAt() };
        return method === 'GET' && path === '/v1/keys/count' ? keyCounts : undefined;
      },
    );
    const events: string[] = [];
    client.subscribe((event) => events.push(event.type));
    await client.connect();
    expect(urls).toEqual([
      'ws://relay.test/v1/websocket?login=signature',
      'ws://relay.test/v1/websocket',
    ]);
    expect(auths).toEqual([{ token: 'from-http' }]);
    expect(requests).toEqual([
      'POST /v1/auth/challenge',
      'POST /v1/auth/token',
      'GET /v1/keys/count (Bearer from-http)',
    ]);
    expect(events).not.toContain('disconnected');
  });
});
