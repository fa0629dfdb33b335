import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeContent,
  MemoryStore,
  PrivcommClient,
  type ClientEvent,
  type SocketLike,
  type Transport,
  type AccountId,
} from '@privcomm/client';
import { deviceIdOf } from '@privcomm/client/testing';
import {
  createTestDatabase,
  requeueEnvelope,
  startRelay,
  TestDevice,
  type TestRelay,
} from '@privcomm/server/testing';
import { memorySigner } from './support/memory-signer.ts';
import { watchedSocket } from './support/watched-socket.ts';
import { nodeBase64, openNodeEngine } from '../src/index.ts';

/**
 * The client core with the real engine (libsignal) against a real relay: the pipelines, not
 * the CLI. Each client keeps its state in memory.
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

/** Every HTTP request the clients made, as "METHOD path". */
const httpRequests: string[] = [];

/** What a client of binary frames sent and received over its sockets, by kind of frame. */
interface FrameCount {
  binarySends: number;
  jsonSends: number;
  binaryEnvelopes: number;
  jsonEnvelopes: number;
}

const transport = (relayUrl: string = relay.url, frames?: FrameCount): Transport => ({
  relayUrl,
  fetch: (url, init) => {
    httpRequests.push(`${init.method} ${new URL(url).pathname}`);
    return fetch(url, init);
  },
  openSocket: (url) =>
    frames
      ? watchedSocket(url, {
          sending: (data) => {
            if (typeof data !== 'string') frames.binarySends += 1;
            else if (data.includes('"verb":"message.send"')) frames.jsonSends += 1;
          },
          received: (data) => {
            if (typeof data !== 'string') frames.binaryEnvelopes += 1;
            else if (data.includes('"verb":"envelope"')) frames.jsonEnvelopes += 1;
            return [data];
          },
        })
      : (new WebSocket(url) as unknown as SocketLike),
  ...(frames ? { binaryFrames: nodeBase64 } : {}),
});

interface TestClient {
  client: PrivcommClient;
  store: MemoryStore;
  events: ClientEvent[];
}

/** A client; with `frames`, one that asks for binary frames, counting them there. */
const newClient = async (relayUrl?: string, frames?: FrameCount): Promise<TestClient> => {
  const store = new MemoryStore();
  const client = await PrivcommClient.open({
    transport: transport(relayUrl, frames),
    engine: await openNodeEngine(':memory:'),
    store,
    signer: memorySigner(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    // Copies to one's own devices are due at once here (they go out on the next connection);
    // their random delay is tested in sync-copies.integration.test.ts.
    syncCopyDelay: { minMs: 0, maxMs: 0 },
  });
  const events: ClientEvent[] = [];
  client.subscribe((event) => events.push(event));
  return { client, store, events };
};

const register = async (
  name: string,
  relayUrl?: string,
  frames?: FrameCount,
): Promise<TestClient> => {
  const test = await newClient(relayUrl, frames);
  await test.client.register({ name });
  return test;
};

/** Connects, waits until the relay says the queue is empty and `until` holds, disconnects. */
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

/** How many sends the relay answered with 409 so far. */
const conflicts = async (): Promise<number> => {
  const metric = await relay.relay.context.metrics.httpRequests.get();
  return metric.values
    .filter((v) => v.labels.route === '/v1/messages/:accountId' && v.labels.status === '409')
    .reduce((sum, v) => sum + v.value, 0);
};

describe('client core with libsignal through a real relay', () => {
  it('exchanges messages both ways, with delivery and read receipts', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const bobId = bob.client.profile!.accountId;
    const aliceId = alice.client.profile!.accountId;
    const sent = await alice.client.sendText(bobId, 'hello bob');
    expect(sent.status).toBe('sent');

    await receive(bob);
    const [received] = await bob.client.history(aliceId);
    expect(received).toMatchObject({ text: 'hello bob', direction: 'in', id: sent.id });

    await receive(alice, () => alice.events.some((e) => e.type === 'receipt'));
    expect((await alice.client.history(bobId))[0]?.status).toBe('delivered');

    // Read receipts go to contacts only (a stranger's message is a request): Bob accepts Alice.
    await bob.client.addContact('alice', aliceId);
    expect(await bob.client.markRead(aliceId)).toBe(1);
    await bob.client.sendText(aliceId, 'hi alice');
    await receive(alice, () => alice.events.filter((e) => e.type === 'message').length >= 1);
    const history = await alice.client.history(bobId);
    expect(history.map((m) => [m.direction, m.text, m.status])).toEqual([
      ['out', 'hello bob', 'read'],
      ['in', 'hi alice', 'delivered'],
    ]);
    await alice.client.addContact('bob', bobId);
    const snapshot = await alice.client.snapshot();
    expect(snapshot.profile?.accountId).toBe(aliceId);
    expect(snapshot.conversations).toEqual([
      expect.objectContaining({
        accountId: bobId,
        name: 'bob',
        lastMessage: expect.objectContaining({ text: 'hi alice' }),
      }),
    ]);
  });

  it('computes equal safety numbers on both sides', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const fromAlice = await alice.client.safetyNumber(bob.client.profile!.accountId);
    const fromBob = await bob.client.safetyNumber(alice.client.profile!.accountId);
    expect(fromAlice.digits).toMatch(/^\d{60}$/);
    expect(fromAlice.digits).toBe(fromBob.digits);
  });

  it('links a second device; the sender recovers through 409 and both devices get the message', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const bobId = bob.client.profile!.accountId;
    await alice.client.sendText(bobId, 'before the link');
    await receive(bob);

    const bobLaptop = await newClient();
    const { linkCode, done } = await bobLaptop.client.startLink();
    // Never starts with "-" (an address may), so a command line cannot take it for an option.
    expect(linkCode).toMatch(/^privcomm-link:[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]+$/);
    await bob.client.addDevice(linkCode);
    const laptopProfile = await done;
    expect(laptopProfile).toMatchObject({ accountId: bobId, deviceId: 2 });

    const conflictsBefore = await conflicts();
    await alice.client.sendText(bobId, 'after the link');
    // Alice only knew Bob's first device: the relay answered 409, and she repaired and resent.
    expect(await conflicts()).toBe(conflictsBefore + 1);
    await receive(bob, () =>
      bob.events.some((e) => e.type === 'message' && e.message.text === 'after the link'),
    );
    await receive(bobLaptop, () => bobLaptop.events.some((e) => e.type === 'message'));
    const laptopHistory = await bobLaptop.client.history(alice.client.profile!.accountId);
    expect(laptopHistory.map((m) => m.text)).toEqual(['after the link']);

    // Bob's phone sends; his laptop gets the copy (sync transcript), which the phone sends on
    // its own, when it next connects.
    await bob.client.sendText(alice.client.profile!.accountId, 'from the phone');
    await receive(bob);
    await receive(bobLaptop, () =>
      bobLaptop.events.some((e) => e.type === 'message' && e.message.direction === 'out'),
    );
    const synced = (await bobLaptop.client.history(alice.client.profile!.accountId)).find(
      (m) => m.direction === 'out',
    );
    expect(synced).toMatchObject({ text: 'from the phone', status: 'sent' });
  });

  it('a connected client sends over its socket, with the same repair after a 409, and over HTTP once disconnected', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const aliceId = alice.client.profile!.accountId;
    const bobId = bob.client.profile!.accountId;
    await alice.client.sendText(bobId, 'before the link');
    await receive(bob);
    const bobLaptop = await newClient();
    const { linkCode, done } = await bobLaptop.client.startLink();
    await bob.client.addDevice(linkCode);
    await done;

    await alice.client.connect();
    const httpBefore = httpRequests.length;
    const conflictsBefore = await conflicts();
    // Alice knows only Bob's first device: the socket's answer is 409, she repairs and resends.
    await alice.client.sendText(bobId, 'over the socket');
    const sendsOverHttp = (from: number): string[] =>
      httpRequests.slice(from).filter((line) => line.startsWith('PUT /v1/messages/'));
    expect(sendsOverHttp(httpBefore)).toEqual([]);
    // The repair fetched the new device's keys over HTTP; the 409 itself never reached the route.
    expect(httpRequests.slice(httpBefore)).toContain(`GET /v1/keys/${bobId}/2`);
    expect(await conflicts()).toBe(conflictsBefore);
    await alice.client.disconnect();

    const afterDisconnect = httpRequests.length;
    await alice.client.sendText(bobId, 'over HTTP');
    expect(sendsOverHttp(afterDisconnect)).toEqual([`PUT /v1/messages/${bobId}`]);

    for (const device of [bob, bobLaptop]) {
      await receive(device, () =>
        ['over the socket', 'over HTTP'].every((text) =>
          device.events.some((e) => e.type === 'message' && e.message.text === text),
        ),
      );
    }
    const laptopHistory = await bobLaptop.client.history(aliceId);
    expect(laptopHistory.map((m) => m.text)).toEqual(['over the socket', 'over HTTP']);
  });

  it('speaks binary frames with the relay when its platform gives a base64 codec, and JSON otherwise', async () => {
    const count = (): FrameCount => ({
      binarySends: 0,
      jsonSends: 0,
      binaryEnvelopes: 0,
      jsonEnvelopes: 0,
    });
    const [aliceFrames, bobFrames] = [count(), count()];
    const alice = await register('alice', undefined, aliceFrames);
    const bob = await register('bob', undefined, bobFrames);
    const carol = await register('carol'); // JSON frames
    const aliceId = alice.client.profile!.accountId;
    const bobId = bob.client.profile!.accountId;
    const carolId = carol.client.profile!.accountId;
    const texts = (test: TestClient): string[] =>
      test.events.flatMap((e) => (e.type === 'message' ? [e.message.text ?? ''] : []));

    await alice.client.connect();
    // First contacts (PQXDH), and a long text: 30,000 bytes, not ASCII.
    const long = 'ü'.repeat(15_000);
    await alice.client.sendText(bobId, 'hello over bytes');
    await alice.client.sendText(bobId, long);
    await alice.client.sendText(carolId, 'hello to JSON');
    await alice.client.disconnect();
    expect(aliceFrames.binarySends).toBeGreaterThanOrEqual(3);
    expect(aliceFrames.jsonSends).toBe(0);

    await receive(bob, () => texts(bob).length === 2);
    expect(texts(bob)).toEqual(['hello over bytes', long]);
    expect(bobFrames.binaryEnvelopes).toBeGreaterThanOrEqual(2);
    expect(bobFrames.jsonEnvelopes).toBe(0);
    await receive(carol, () => texts(carol).length === 1);
    expect(texts(carol)).toEqual(['hello to JSON']);

    // Bob's answer (and the receipts) come back to Alice's socket as bytes.
    await bob.client.sendText(aliceId, 'and back');
    const envelopesBefore = aliceFrames.binaryEnvelopes;
    await receive(alice, () => texts(alice).includes('and back'));
    expect(aliceFrames.binaryEnvelopes).toBeGreaterThan(envelopesBefore);
    expect(aliceFrames.jsonEnvelopes).toBe(0);
    const history = await alice.client.history(bobId);
    expect(history.map((m) => m.text)).toEqual(['hello over bytes', long, 'and back']);
  });

  it('logs in on its socket when it has no fresh token: no HTTP login, and its HTTP requests use the token the socket gave', async () => {
    const store = new MemoryStore();
    const deps = {
      transport: transport(),
      engine: await openNodeEngine(':memory:'),
      store,
      signer: memorySigner(),
      randomBytes: (n: number) => new Uint8Array(randomBytes(n)),
    };
    const first = await PrivcommClient.open(deps);
    await first.register({ name: 'dora' });
    // The same device opened again (an app started anew): it has no token yet.
    const again = await PrivcommClient.open(deps);
    const before = httpRequests.length;
    await again.connect();
    await again.maintainKeys();
    await again.disconnect();
    const made = httpRequests.slice(before);
    expect(made).not.toContain('POST /v1/auth/challenge');
    expect(made).not.toContain('POST /v1/auth/token');
    expect(made).toContain('GET /v1/keys/count');
  });

  it('a linked device gets the contacts it asks for; later ones come with syncContacts', async () => {
    const bob = await register('bob');
    const [carol, dave, erin, frank] = ['c', 'd', 'e', 'f'].map(
      (letter) => `${letter.repeat(8)}-0000-4000-8000-000000000000`,
    ) as [string, string, string, string];
    await bob.client.addContact('carol', carol);
    await bob.client.addContact('dave', dave);

    const laptop = await newClient();
    const { linkCode, done } = await laptop.client.startLink();
    await bob.client.addDevice(linkCode);
    await done;
    // The laptop asked; the phone answers once it has handled the request.
    await receive(bob, () => bob.events.some((e) => e.type === 'contacts-requested'));
    await receive(laptop, () => laptop.events.some((e) => e.type === 'contacts-synced'));
    const names = async (test: TestClient) =>
      (await test.client.contacts()).map((c) => [c.name, c.accountId]).sort();
    expect(await names(laptop)).toEqual([
      ['carol', carol],
      ['dave', dave],
    ]);
    expect(laptop.events).toContainEqual({
      type: 'contacts-synced',
      fromDevice: 1,
      contacts: [
        { accountId: carol, name: 'carol', expireSeconds: 0 },
        { accountId: dave, name: 'dave', expireSeconds: 0 },
      ],
    });

    // A rename on the laptop reaches the phone; a name the phone already uses for another
    // account stays the phone's.
    await bob.client.addContact('erin', erin);
    await laptop.client.addContact('caroline', carol);
    await laptop.client.addContact('erin', frank);
    expect(await laptop.client.syncContacts()).toBe(3);
    await receive(bob, () => bob.events.some((e) => e.type === 'contacts-synced'));
    expect(await names(bob)).toEqual([
      ['caroline', carol],
      ['dave', dave],
      ['erin', erin],
    ]);
    // A device alone on its account has nobody to send them to.
    const alone = await register('alone');
    await alone.client.addContact('carol', carol);
    expect(await alone.client.syncContacts()).toBe(0);
  });

  it('typing indicators are online-only and never stored', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const bobId = bob.client.profile!.accountId;
    await alice.client.sendText(bobId, 'first');
    await receive(bob);
    await bob.client.connect();
    await alice.client.sendTyping(bobId, true);
    await expect.poll(() => bob.events.some((e) => e.type === 'typing' && e.typing)).toBe(true);
    await bob.client.disconnect();
    expect(await relay.relay.context.envelopes.countFor(bobId, 1)).toBe(0);
    await alice.client.sendTyping(bobId, false); // offline now: dropped, not stored
    expect(await relay.relay.context.envelopes.countFor(bobId, 1)).toBe(0);
  });

  it('disappearing messages and delete-for-everyone apply on both sides', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const [aliceId, bobId] = [alice.client.profile!.accountId, bob.client.profile!.accountId];
    await alice.client.sendText(bobId, 'hello');
    await receive(bob);
    await bob.client.sendText(aliceId, 'hello back');
    await receive(alice, () => alice.events.some((e) => e.type === 'message'));

    await alice.client.setDisappearing(bobId, 1);
    const ephemeral = await alice.client.sendText(bobId, 'gone soon');
    const doomed = await alice.client.sendText(bobId, 'regret');
    await alice.client.deleteForEveryone(bobId, doomed.id);
    await receive(bob, () => bob.events.some((e) => e.type === 'deleted'));
    const bobSide = await bob.client.history(aliceId);
    expect(bobSide.find((m) => m.id === doomed.id)).toMatchObject({ deleted: true, text: '' });
    expect(bobSide.find((m) => m.id === ephemeral.id)?.expiresAt).toBeDefined();
    // The timer is one second: both sides drop the message once it has passed.
    await expect
      .poll(async () => (await bob.client.history(aliceId)).some((m) => m.id === ephemeral.id), {
        timeout: 5_000,
      })
      .toBe(false);
    await expect
      .poll(async () => (await alice.client.history(bobId)).some((m) => m.id === ephemeral.id), {
        timeout: 5_000,
      })
      .toBe(false);
  });

  it('a redelivered envelope is acknowledged again without a second message', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const [aliceId, bobId] = [alice.client.profile!.accountId, bob.client.profile!.accountId];
    await alice.client.sendText(bobId, 'only once');
    const { pool } = relay.relay.context.database;
    const queued = await pool.query(
      'SELECT id, account_id, device_id, type, content, urgent, expires_at FROM envelopes WHERE account_id = $1',
      [bobId],
    );
    expect(queued.rowCount).toBe(1);
    await receive(bob);
    // As if Bob's answer had been lost: the relay still has the envelope and sends it again.
    const row = queued.rows[0];
    await requeueEnvelope(pool, row);
    const eventsBefore = bob.events.length;
    await receive(bob);
    expect(
      bob.events
        .slice(eventsBefore)
        .filter((e) => e.type !== 'queue-empty' && e.type !== 'disconnected'),
    ).toEqual([]);
    expect((await bob.client.history(aliceId)).map((m) => m.text)).toEqual(['only once']);
    // The acknowledgement deletes it on the relay (asynchronously, after the answer).
    await expect.poll(() => relay.relay.context.envelopes.countFor(bobId, 1)).toBe(0);
  });

  it('detects an identity change served by a malicious relay, and blocks sending to a verified contact', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const mallory = await register('mallory');
    const [bobId, malloryId] = [bob.client.profile!.accountId, mallory.client.profile!.accountId];
    await alice.client.sendText(bobId, 'hi');
    await alice.client.verify(bobId);
    expect(await alice.client.identity(bobId)).toMatchObject({ verified: true, changed: false });

    // The relay swaps Bob's keys for Mallory's and bumps the registration id, forcing a new session.
    const { pool } = relay.relay.context.database;
    await pool.query(
      'UPDATE accounts SET identity_key = (SELECT identity_key FROM accounts WHERE id = $2) WHERE id = $1',
      [bobId, malloryId],
    );
    await pool.query(
      `UPDATE devices d SET registration_id = m.registration_id, signed_prekey_id = m.signed_prekey_id,
         signed_prekey = m.signed_prekey, signed_prekey_signature = m.signed_prekey_signature,
         kem_last_resort_key_id = m.kem_last_resort_key_id, kem_last_resort_key = m.kem_last_resort_key,
         kem_last_resort_signature = m.kem_last_resort_signature
       FROM devices m WHERE d.account_id = $1 AND d.device_id = 1 AND m.account_id = $2 AND m.device_id = 1`,
      [bobId, malloryId],
    );
    await pool.query('DELETE FROM one_time_prekeys WHERE account_id = $1', [bobId]);
    await pool.query('DELETE FROM one_time_kem_prekeys WHERE account_id = $1', [bobId]);

    const queuedBefore = await relay.relay.context.envelopes.countFor(bobId, 1);
    await expect(alice.client.sendText(bobId, 'secret')).rejects.toMatchObject({
      code: 'UNTRUSTED_IDENTITY',
    });
    const state = await alice.client.identity(bobId);
    expect(state).toMatchObject({ verified: true, changed: true });
    expect(state?.pendingIdentityKey).toBeDefined();
    // Nothing more reached the relay for Bob: the send was blocked before encryption.
    expect(await relay.relay.context.envelopes.countFor(bobId, 1)).toBe(queuedBefore);

    await alice.client.acceptIdentity(bobId);
    expect(await alice.client.identity(bobId)).toMatchObject({ verified: false, changed: false });
  });

  it('refuses a sealed message whose sender key is not the identity the named account registered', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const [aliceId, bobId] = [alice.client.profile!.accountId, bob.client.profile!.accountId];

    const forger = await forgeSender(bobId, aliceId);
    await forger.send('this is Bob, really');

    await receive(alice);
    expect(alice.events).toContainEqual(
      expect.objectContaining({ type: 'decryption-failed', reason: 'UNCONFIRMED_IDENTITY' }),
    );
    expect(await alice.client.history(bobId)).toEqual([]);
    // Nothing of the forger's key was kept: Bob's real first message is accepted afterwards.
    expect(await alice.client.identity(bobId)).toBeUndefined();
    await bob.client.sendText(aliceId, 'the real Bob');
    await receive(alice, () => alice.events.some((e) => e.type === 'message'));
    expect((await alice.client.history(bobId)).map((m) => m.text)).toEqual(['the real Bob']);
    await forger.engine.close();
  });

  it("keeps a verified contact's message under a new key queued until the change is accepted", async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const [aliceId, bobId] = [alice.client.profile!.accountId, bob.client.profile!.accountId];
    await bob.client.sendText(aliceId, 'before');
    await receive(alice, () => alice.events.some((e) => e.type === 'message'));
    await alice.client.verify(bobId);

    // Bob's account now has another identity key (the relay says so too), and a message comes
    // under it.
    const forger = await forgeSender(bobId, aliceId);
    await relay.relay.context.database.pool.query(
      'UPDATE accounts SET identity_key = $2 WHERE id = $1',
      [bobId, Buffer.from(forger.identityKey)],
    );
    await forger.send('under the new key');
    const { envelopes } = relay.relay.context;

    await receive(alice);
    expect(alice.events).toContainEqual({ type: 'identity-changed', accountId: bobId });
    expect((await alice.client.history(bobId)).map((m) => m.text)).toEqual(['before']);
    expect(await alice.client.identity(bobId)).toMatchObject({ verified: true, changed: true });
    expect(await envelopes.countFor(aliceId, 1)).toBe(1);

    await alice.client.acceptIdentity(bobId);
    const before = alice.events.length;
    await receive(alice, () => alice.events.slice(before).some((e) => e.type === 'message'));
    expect((await alice.client.history(bobId)).map((m) => m.text)).toEqual([
      'before',
      'under the new key',
    ]);
    await expect.poll(() => envelopes.countFor(aliceId, 1)).toBe(0);
    await forger.engine.close();
  });
});

/**
 * An engine of its own that calls itself `claimedSender` (device 1), with a session to `target`
 * from its bundle on the relay; `send` seals a text and sends it through an ordinary account.
 */
const forgeSender = async (claimedSender: AccountId, target: AccountId) => {
  const engine = await openNodeEngine(':memory:');
  const { identityKey } = await engine.createIdentity();
  await engine.setLocalAddress({ accountId: claimedSender, deviceId: deviceIdOf(1) });
  const { context } = relay.relay;
  const [device] = await context.keys.takeBundles(target, deviceIdOf(1));
  const targetKey = (await context.accounts.identityKey(target))!;
  const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));
  await engine.processBundle(
    { accountId: target, deviceId: deviceIdOf(1) },
    {
      identityKey: new Uint8Array(targetKey),
      deviceId: deviceIdOf(1),
      registrationId: device!.registrationId,
      signedPreKey: {
        ...device!.signedPreKey,
        publicKey: bytes(device!.signedPreKey.publicKey),
        signature: bytes(device!.signedPreKey.signature),
      },
      ...(device!.preKey && {
        preKey: { keyId: device!.preKey.keyId, publicKey: bytes(device!.preKey.publicKey) },
      }),
      kyberPreKey: {
        ...device!.kyberPreKey,
        publicKey: bytes(device!.kyberPreKey.publicKey),
        signature: bytes(device!.kyberPreKey.signature),
      },
    },
  );
  const carrier = await TestDevice.register(relay.url);
  const send = async (text: string): Promise<void> => {
    const sealed = await engine.encrypt(
      { accountId: target, deviceId: deviceIdOf(1) },
      encodeContent({ kind: 'text', id: randomBytes(8).toString('hex'), sentAt: Date.now(), text }),
    );
    const sent = await carrier.request('PUT', `/v1/messages/${target}`, {
      messages: [
        {
          deviceId: 1,
          registrationId: sealed.registrationId,
          type: sealed.type,
          content: Buffer.from(sealed.content).toString('base64'),
        },
      ],
    });
    expect(sent.status).toBe(200);
  };
  return { engine, identityKey, send };
};

describe("client core against the relay's abuse limits", () => {
  it('keeps a text refused with QUEUE_FULL in the outbox, and sends it once the queue drained', async () => {
    const limited = await startRelay(databaseUrl, {
      QUEUE_MAX_ENVELOPES: '2',
    });
    try {
      const alice = await register('alice', limited.url);
      const bob = await register('bob', limited.url);
      const bobId = bob.client.profile!.accountId;
      const aliceId = alice.client.profile!.accountId;
      // Messages waiting for the relay (the copies to Alice's own devices wait too, apart).
      const waiting = async () =>
        (await alice.store.outbox()).filter((entry) => entry.recipient === bobId);
      await alice.client.sendText(bobId, 'one');
      await alice.client.sendText(bobId, 'two');
      await expect(alice.client.sendText(bobId, 'three')).rejects.toMatchObject({
        code: 'RELAY_REFUSED',
        relayCode: 'QUEUE_FULL',
      });
      // Kept, not failed: still "sending", still in the outbox.
      expect((await alice.client.history(bobId)).map((m) => [m.text, m.status])).toEqual([
        ['one', 'sent'],
        ['two', 'sent'],
        ['three', 'sending'],
      ]);
      expect(await waiting()).toHaveLength(1);
      // Connecting tries the outbox again; still refused, it stays there and receiving goes on.
      await receive(alice);
      expect(await waiting()).toHaveLength(1);

      await receive(bob);
      expect(await alice.client.flushOutbox()).toBe(1);
      expect(await waiting()).toHaveLength(0);
      await receive(bob, () => bob.events.filter((e) => e.type === 'message').length >= 3);
      expect((await bob.client.history(aliceId)).map((m) => m.text)).toEqual([
        'one',
        'two',
        'three',
      ]);
    } finally {
      await limited.close();
    }
  });

  it('a first message reaches a device whose one-time prekeys the relay withholds (last-resort key)', async () => {
    const limited = await startRelay(databaseUrl, {
      RATE_LIMIT_PREKEY_TARGET: '1/3600',
    });
    try {
      const bob = await register('bob', limited.url);
      const bobId = bob.client.profile!.accountId;
      // A stranger spends bob's budget of one-time keys.
      const stranger = await TestDevice.register(limited.url);
      const taken = await stranger.request('GET', `/v1/keys/${bobId}/1`);
      expect(taken.body.devices[0].preKey).toBeDefined();
      const withheld = await stranger.request('GET', `/v1/keys/${bobId}/1`);
      expect(withheld.status).toBe(200);
      expect(withheld.body.devices[0].preKey).toBeUndefined();
      expect(withheld.body.devices[0].kyberPreKeyIsLastResort).toBe(true);

      // Alice's session therefore starts from the signed and last-resort keys only.
      const alice = await register('alice', limited.url);
      await alice.client.sendText(bobId, 'hello without one-time keys');
      await receive(bob, () => bob.events.some((e) => e.type === 'message'));
      expect((await bob.client.history(alice.client.profile!.accountId))[0]?.text).toBe(
        'hello without one-time keys',
      );
    } finally {
      await limited.close();
    }
  });
});
