import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeContent,
  MemoryStore,
  PrivcommClient,
  type ClientEvent,
  type ClientLogger,
  type LogLevel,
  type ConnectionState,
  type Content,
  type SocketLike,
  type Transport,
  type AccountId,
} from '@privcomm/client';
import { deviceIdOf } from '@privcomm/client/testing';
import { MAX_CONTENT_BYTES, MAX_TEXT_BYTES } from '@privcomm/wire';
import {
  createTestDatabase,
  startRelay,
  TestDevice,
  type TestRelay,
  portToRestartOn,
} from '@privcomm/server/testing';
import { memorySigner } from './support/memory-signer.ts';
import { watchedSocket } from './support/watched-socket.ts';
import { openNodeEngine } from '../src/index.ts';

/**
 * The client core as the Android app will use it: `start` keeps it connected while the relay
 * restarts, while its socket carries garbage, and while malformed envelopes sit in its queue.
 * Real engine (libsignal), real relay, real PostgreSQL.
 */
let relay: TestRelay | undefined;
let databaseUrl: string;
let drop: () => Promise<void>;
let port: number;

/**
 * The relay stops hard: sockets get 1001, and every connection is cut at once, also an HTTP
 * request in flight (the client must keep what it was sending). Meanwhile clients reach a
 * closed port instead (a real "connection refused"). A graceful close alone can take 70 s here:
 * a keep-alive connection whose request was in flight when the close began stays open until
 * Fastify's keep-alive timeout (72 s).
 */
let down = false;
const reachable = (url: string): string => (down ? url.replace(`:${port}/`, ':1/') : url);

const stopRelay = async (): Promise<void> => {
  down = true;
  const closing = relay!.close();
  relay!.relay.app.server.closeAllConnections();
  await closing;
};
const startOnPort = async (): Promise<void> => {
  relay = await startRelay(databaseUrl, { PORT: String(port) });
  down = false;
};

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  databaseUrl = database.url;
  port = await portToRestartOn();
  await startOnPort();
});
afterAll(async () => {
  if (relay) await stopRelay();
  await drop?.();
});

/** Frames no relay sends, delivered before every real one when the socket is hostile. */
const GARBAGE: unknown[] = [
  'not json {',
  Buffer.from([0xff, 0x00, 0x13]),
  JSON.stringify({ type: 'request', id: -5, verb: 'envelope', body: {} }),
  JSON.stringify({
    type: 'request',
    id: 4_000_001,
    verb: 'envelope',
    body: { id: 'x', content: 7 },
  }),
  JSON.stringify({ type: 'response', id: 99, status: 42 }),
  JSON.stringify({ type: 'request', id: 4_000_002, verb: 'no.such.verb' }),
  JSON.stringify([1, 2, 3]),
  'null',
];

/** A `ws` socket that, when `hostile`, slips garbage in front of every frame the relay sends. */
const socketFactory =
  (hostile: () => boolean) =>
  (url: string): SocketLike =>
    watchedSocket(reachable(url), {
      received: (data) => (hostile() ? [...GARBAGE, data] : [data]),
    });

class CapturingLogger implements ClientLogger {
  readonly lines: { level: LogLevel; event: string; reason?: string }[] = [];
  log(level: LogLevel, event: string, reason?: string): void {
    this.lines.push({ level, event, ...(reason === undefined ? {} : { reason }) });
  }
}

interface TestClient {
  client: PrivcommClient;
  store: MemoryStore;
  events: ClientEvent[];
  logger: CapturingLogger;
  states: ConnectionState[];
  id: AccountId;
  running?: Promise<void>;
}

const newClient = async (name: string, hostile = () => false): Promise<TestClient> => {
  const transport: Transport = {
    relayUrl: `http://127.0.0.1:${port}`,
    fetch: (url, init) => fetch(reachable(url), init),
    openSocket: socketFactory(hostile),
  };
  const store = new MemoryStore();
  const logger = new CapturingLogger();
  const client = await PrivcommClient.open({
    transport,
    engine: await openNodeEngine(':memory:'),
    store,
    signer: memorySigner(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    logger,
    // Waits (backoff, send retries) a tenth as long: the test is about order, not time.
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms / 10)),
    // Copies to one's own devices go out at once (their delay: sync-copies.integration.test.ts).
    syncCopyDelay: { minMs: 0, maxMs: 0 },
  });
  const events: ClientEvent[] = [];
  const states: ConnectionState[] = [];
  client.subscribe((event) => {
    events.push(event);
    if (event.type === 'connection') states.push(event.status.state);
  });
  await client.register({ name });
  return { client, store, events, logger, states, id: client.profile!.accountId };
};

const start = (test: TestClient): void => {
  test.running = test.client.start();
  test.running.catch(() => undefined);
};

const until = async (what: () => boolean | Promise<boolean>, timeout = 20_000) =>
  expect.poll(what, { timeout, interval: 50 }).toBe(true);

const online = (test: TestClient) =>
  until(async () => (await test.client.snapshot()).connection.state === 'online');

const texts = async (test: TestClient, conversation: string, direction: 'in' | 'out') =>
  (await test.client.history(conversation))
    .filter((m) => m.direction === direction)
    .map((m) => m.text);

describe('client core through relay restarts and malformed input', () => {
  it('goes offline and back online across restarts, loses nothing queued, and keeps working', async () => {
    const alice = await newClient('alice');
    let hostile = false;
    const bob = await newClient('bob', () => hostile);
    start(alice);
    start(bob);
    await online(alice);
    await online(bob);

    await alice.client.sendText(bob.id, 'before the restart');
    await until(async () => (await texts(bob, alice.id, 'in')).includes('before the restart'));

    // The relay stops: both clients notice and wait to reconnect.
    await stopRelay();
    await until(() => bob.states.includes('offline') && alice.states.includes('offline'));
    expect((await bob.client.snapshot()).connection).toMatchObject({
      state: expect.stringMatching(/^(offline|connecting)$/),
    });
    // Sends while it is down are kept, not lost and not failed.
    await expect(alice.client.sendText(bob.id, 'while it was down')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    await expect(bob.client.sendText(alice.id, 'reply while down')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    // (Beside any copy to Alice's own devices, which waits in the outbox on its own.)
    expect((await alice.store.outbox()).filter((e) => e.recipient === bob.id)).toHaveLength(1);

    // Same port, same database: both reconnect by themselves and flush what they kept.
    hostile = true;
    await startOnPort();
    await until(async () => (await texts(bob, alice.id, 'in')).includes('while it was down'));
    await until(async () => (await texts(alice, bob.id, 'in')).includes('reply while down'));
    // Removed from the outbox once the relay accepted them (just after the peer may have them).
    await until(async () => (await alice.store.outbox()).length === 0);
    await until(async () => (await bob.store.outbox()).length === 0);
    for (const test of [alice, bob]) {
      const offlineAt = test.states.indexOf('offline');
      expect(test.states.slice(0, offlineAt)).toEqual(['connecting', 'online']);
      expect(test.states.slice(offlineAt)).toContain('online');
      expect(test.states.at(-1)).toBe('online');
    }
    // Delivery receipts still flow (sent as soon as the envelopes are handled).
    await until(async () =>
      (await alice.client.history(bob.id)).every(
        (m) => m.direction === 'in' || m.status === 'delivered',
      ),
    );

    // A second restart, with garbage on Bob's socket all along.
    await stopRelay();
    await until(() => bob.states.filter((s) => s === 'offline').length >= 2);
    await startOnPort();
    await alice.client.sendText(bob.id, 'after the second restart').catch(() => undefined);
    await until(async () =>
      (await texts(bob, alice.id, 'in')).includes('after the second restart'),
    );
    await bob.client.sendText(alice.id, 'still working');
    await until(async () => (await texts(alice, bob.id, 'in')).includes('still working'));

    expect(await texts(bob, alice.id, 'in')).toEqual([
      'before the restart',
      'while it was down',
      'after the second restart',
    ]);
    // Every piece of garbage was refused with a reason, none crashed the client.
    const reasons = new Set(bob.logger.lines.map((l) => l.reason));
    for (const reason of [
      'frame is not JSON',
      'frame is not text',
      'frame does not match the protocol',
      'malformed envelope',
    ])
      expect(reasons).toContain(reason);

    await alice.client.stop();
    await bob.client.stop();
    await Promise.all([alice.running, bob.running]);
    expect(bob.states.at(-1)).toBe('offline');
  });

  it('drops an undecryptable envelope in the queue with a logged reason and delivers the ones around it', async () => {
    const alice = await newClient('alice');
    const bob = await newClient('bob');
    await alice.client.sendText(bob.id, 'first');
    // Someone puts bytes that are no Signal message into Bob's queue, between two real ones.
    const carrier = await TestDevice.register(relay!.url);
    const { devices } = await bob.client.devices();
    const registrationId = devices[0]!.registrationId;
    const garbage = await carrier.request('PUT', `/v1/messages/${bob.id}`, {
      messages: [
        {
          deviceId: 1,
          registrationId,
          type: 6,
          content: Buffer.from('garbage, not a message').toString('base64'),
        },
      ],
    });
    expect(garbage.status).toBe(200);
    await alice.client.sendText(bob.id, 'second');

    start(bob);
    await until(async () => (await texts(bob, alice.id, 'in')).length === 2);
    expect(await texts(bob, alice.id, 'in')).toEqual(['first', 'second']);
    expect(bob.events.filter((e) => e.type === 'decryption-failed')).toHaveLength(1);
    expect(bob.logger.lines).toContainEqual(expect.objectContaining({ event: 'envelope dropped' }));
    // Nothing stays queued for Bob: the garbage was acknowledged, not left to block the queue.
    await until(
      async () => (await relay!.relay.context.envelopes.countFor(bob.id, deviceIdOf(1))) === 0,
    );
    await bob.client.stop();
    await bob.running;
  });

  it('a kept message the relay now refuses is marked failed and does not hold back the others', async () => {
    const alice = await newClient('alice');
    const bob = await newClient('bob');
    const carol = await newClient('carol');
    // The network is gone (clients reach a closed port): both sends are kept.
    down = true;
    await expect(alice.client.sendText(carol.id, 'to carol')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    await expect(alice.client.sendText(bob.id, 'to bob')).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    down = false;
    // Meanwhile Carol's account went away: her message can never be sent.
    await carol.client.deleteAccount();
    start(alice);
    start(bob);
    await until(async () => (await texts(bob, alice.id, 'in')).includes('to bob'));
    await until(async () => (await alice.store.outbox()).length === 0);
    expect((await alice.client.history(carol.id)).map((m) => m.status)).toEqual(['failed']);
    expect(alice.logger.lines).toContainEqual({
      level: 'warn',
      event: 'queued message failed',
      reason: 'unknown account',
    });
    await alice.client.stop();
    await bob.client.stop();
  });

  it('stops for good, with a clear error, when the relay no longer accepts the device', async () => {
    const alice = await newClient('alice');
    start(alice);
    await online(alice);
    await alice.client.deleteAccount();
    await expect(alice.running).rejects.toMatchObject({
      code: 'RELAY_REFUSED',
      relayCode: 'UNAUTHENTICATED',
    });
    expect(alice.states.at(-1)).toBe('stopped');
    expect((await alice.client.snapshot()).connection).toMatchObject({
      state: 'stopped',
      error: expect.objectContaining({ message: expect.stringContaining('no longer accepted') }),
    });
  });

  it('never logs an id, a number, a key or a text', async () => {
    const alice = await newClient('alice');
    const bob = await newClient('bob', () => true);
    start(alice);
    start(bob);
    await online(bob);
    const sent = await alice.client.sendText(bob.id, 'a secret text 12345');
    await until(async () => (await texts(bob, alice.id, 'in')).length === 1);
    await bob.client.sendText(alice.id, 'another secret');
    await until(async () => (await texts(alice, bob.id, 'in')).length === 1);
    await stopRelay();
    await until(() => bob.states.includes('offline'));
    await startOnPort();
    await online(bob);
    await alice.client.stop();
    await bob.client.stop();

    const logged = [...alice.logger.lines, ...bob.logger.lines].flatMap((l) => [
      l.event,
      l.reason ?? '',
    ]);
    expect(logged.length).toBeGreaterThan(0);
    for (const line of logged) {
      // Fixed phrases only: letters and spaces (no digits, so no id, number, key or port).
      expect(line).toMatch(/^[A-Za-z ]*$/);
      for (const secret of [alice.id, bob.id, sent.id, 'secret'])
        expect(line).not.toContain(secret);
    }
  });

  it('a text of the largest size fits the relay limit, also as the copy to its own devices', async () => {
    const alice = await newClient('alice');
    const bob = await newClient('bob');
    // Characters that grow the most in JSON and UTF-8, up to the limit.
    const text = '"\n'.repeat(MAX_TEXT_BYTES / 4) + 'é'.repeat((MAX_TEXT_BYTES % 4) / 2);
    const sent = await alice.client.sendText(bob.id, text);
    expect(sent.status).toBe('sent');
    // The sync copy is larger than the message; encrypt it as a first message (PQXDH, the
    // largest kind) to a fresh device and compare with the relay's limit.
    const probe = await openNodeEngine(':memory:');
    await probe.createIdentity();
    await probe.setLocalAddress({ accountId: alice.id, deviceId: deviceIdOf(2) });
    const { context } = relay!.relay;
    const [device] = await context.keys.takeBundles(bob.id, deviceIdOf(1));
    const key = (await context.accounts.identityKey(bob.id))!;
    const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));
    await probe.processBundle(
      { accountId: bob.id, deviceId: deviceIdOf(1) },
      {
        identityKey: new Uint8Array(key),
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
    const inner: Content = {
      kind: 'text',
      id: sent.id,
      sentAt: Date.now(),
      text,
      expireSeconds: 31_536_000,
    };
    const sync: Content = {
      kind: 'sync',
      id: sent.id,
      sentAt: Date.now(),
      to: bob.id,
      content: inner,
    };
    const sealed = await probe.encrypt(
      { accountId: bob.id, deviceId: deviceIdOf(1) },
      encodeContent(sync),
    );
    expect(sealed.content.length).toBeLessThanOrEqual(MAX_CONTENT_BYTES);
    await probe.close();
  });
});
