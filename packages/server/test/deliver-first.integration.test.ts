import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket, type HttpResult } from './support/client.ts';
import { cutListeners, storeElsewhere } from './support/listener.ts';
import { spawnRelay, startRelay, type TestRelay } from './support/relay.ts';

/**
 * Deliver first, store only what is not acknowledged (services/deliver-first.ts), on a real relay
 * and database: what a send's acceptance means in each race between the device's answer, the
 * window and the write. A window of 300 ms keeps "within" and "after" apart on a loaded machine.
 */
const WINDOW_MS = 300;

let database: { url: string; drop: () => Promise<void> };
let relay: TestRelay;
/** The same, with a window of one envelope per socket: the second send must take the write path. */
let narrow: TestRelay;
/** The longest window (1 s): a send waiting for a write has time to see it end on a busy machine. */
let patient: TestRelay;

beforeAll(async () => {
  database = await createTestDatabase();
  [relay, narrow, patient] = await Promise.all([
    startRelay(database.url, { WS_DIRECT_WINDOW_MS: String(WINDOW_MS) }),
    startRelay(database.url, { WS_DIRECT_WINDOW_MS: String(WINDOW_MS), WS_WINDOW: '1' }),
    startRelay(database.url, { WS_DIRECT_WINDOW_MS: '1000' }),
  ]);
});
afterAll(async () => {
  await Promise.all([relay?.close(), narrow?.close(), patient?.close()]);
  await database?.drop();
});

const pair = async (on: TestRelay): Promise<[TestDevice, TestDevice]> =>
  Promise.all([TestDevice.register(on.url), TestDevice.register(on.url)]);

/** A socket for `device`, caught up (its queue read to the end). */
const caughtUp = async (
  on: TestRelay,
  device: TestDevice,
  ackStatus: number | null = 200,
): Promise<TestSocket> => {
  const socket = await TestSocket.connect(on.wsUrl, device, ackStatus);
  await socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'));
  return socket;
};

/** The device's queue counter (from a random start): every write advances it. */
const queueSeq = async (device: TestDevice): Promise<number> => {
  const result = await relay.relay.context.database.pool.query<{ queue_seq: string }>(
    'SELECT queue_seq FROM devices WHERE account_id = $1 AND device_id = $2',
    [device.accountId, device.deviceId],
  );
  return Number(result.rows[0]?.queue_seq);
};

/** The device's stored envelopes, in queue order. */
const rows = async (device: TestDevice): Promise<{ id: string; text: string }[]> => {
  const result = await relay.relay.context.database.pool.query<{ id: string; content: Buffer }>(
    'SELECT id, content FROM envelopes WHERE account_id = $1 AND device_id = $2 ORDER BY seq',
    [device.accountId, device.deviceId],
  );
  return result.rows.map((row) => ({ id: row.id, text: row.content.toString() }));
};

/** Envelopes accepted on their device's acknowledgement alone (the relay's metric). */
const acknowledgedFirst = async (): Promise<number> =>
  (await relay.relay.context.metrics.directAcknowledged.get()).values[0]?.value ?? 0;

/** A new connection gets the envelope `id` again; answered, its row goes. */
const redeliveredOnce = async (device: TestDevice, id: string | undefined): Promise<void> => {
  const socket = await caughtUp(relay, device);
  expect(socket.envelopes().map((e) => e.id)).toEqual([id]);
  await expect.poll(() => rows(device), { timeout: 5_000 }).toEqual([]);
  await socket.close();
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('deliver first', () => {
  it('a send acknowledged within the window is accepted with nothing written', async () => {
    const [alice, bob] = await pair(relay);
    const socket = await caughtUp(relay, bob);
    const before = await acknowledgedFirst();
    const seqBefore = await queueSeq(bob);
    const sent = await alice.send(bob.accountId, [bob.address()], 'hello first');
    expect(sent.status).toBe(200);
    expect(sent.body).toEqual({ stored: 1 });
    expect(socket.texts()).toEqual(['hello first']);
    expect(await queueSeq(bob)).toBe(seqBefore); // no insert ever took a position
    expect((await acknowledgedFirst()) - before).toBe(1);
    await socket.close();
  });

  it('accepts on the acknowledgement alone while writes to the queue are blocked', async () => {
    const [alice, bob] = await pair(relay);
    const socket = await caughtUp(relay, bob);
    const blocker = await relay.relay.context.database.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE envelopes IN ACCESS EXCLUSIVE MODE');
      const sent = await alice.send(bob.accountId, [bob.address()], 'no write needed');
      expect(sent.status).toBe(200);
      expect(socket.texts()).toEqual(['no write needed']);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    await socket.close();
  });

  it('acknowledged after the window: written with the id the device saw, accepted after the commit; the late answer deletes the row and nothing is sent twice', async () => {
    const [alice, bob] = await pair(relay);
    const socket = await caughtUp(relay, bob, null);
    const started = Date.now();
    const sent = await alice.send(bob.accountId, [bob.address()], 'late answer');
    expect(sent.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(WINDOW_MS);
    const [frame] = socket.requests.filter((r) => r.verb === 'envelope');
    expect(frame).toBeDefined();
    // Accepted only once committed: the row is there, under the id the device already has.
    expect(await rows(bob)).toEqual([{ id: frame?.body?.id, text: 'late answer' }]);
    socket.respond(frame?.id as number, 200);
    await expect.poll(() => rows(bob), { timeout: 5_000 }).toEqual([]);
    await sleep(100);
    expect(socket.envelopes()).toHaveLength(1);
    await socket.close();
  });

  it('answers racing the write (just before and just after the deadline) never leave a row, lose or repeat an envelope', async () => {
    const [alice, bob] = await pair(relay);
    const socket = await caughtUp(relay, bob, null);
    const seqBefore = await queueSeq(bob);
    const answered = new Set<number>();
    const texts = Array.from({ length: 24 }, (_, i) => `race ${i}`);
    const sends: Promise<HttpResult>[] = [];
    for (const [i, text] of texts.entries()) {
      sends.push(alice.send(bob.accountId, [bob.address()], text));
      await socket.until(() => socket.envelopes().length === i + 1, 5_000, `envelope ${i}`);
      const frame = socket.requests.filter((r) => r.verb === 'envelope')[i];
      // From well inside the window to past it, around the moment the write starts.
      setTimeout(
        () => {
          answered.add(frame?.id as number);
          socket.respond(frame?.id as number, 200);
        },
        WINDOW_MS - 60 + i * 5,
      );
    }
    expect((await Promise.all(sends)).map((result) => result.status)).toEqual(texts.map(() => 200));
    await socket.until(() => answered.size === texts.length, 10_000, 'all answered');
    await expect.poll(() => rows(bob), { timeout: 5_000 }).toEqual([]);
    expect(socket.texts()).toEqual(texts); // each once, in order
    // Some were decided at the deadline and written (and later deleted), some never written.
    const written = (await queueSeq(bob)) - seqBefore;
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(texts.length);
    await socket.close();
  });

  it('a socket closing in the window: the envelope is written, accepted, and delivered again with the same id', async () => {
    const [alice, bob] = await pair(relay);
    const first = await caughtUp(relay, bob, null);
    const sending = alice.send(bob.accountId, [bob.address()], 'closed in the window');
    await first.until(() => first.envelopes().length === 1);
    await first.close();
    expect((await sending).status).toBe(200);
    const [seen] = first.envelopes();
    expect(await rows(bob)).toEqual([{ id: seen?.id, text: 'closed in the window' }]);
    await redeliveredOnce(bob, seen?.id);
  });

  it('refused in the window: written and kept for the next connection, like any refused envelope', async () => {
    const [alice, bob] = await pair(relay);
    const first = await caughtUp(relay, bob, 409);
    expect((await alice.send(bob.accountId, [bob.address()], 'refused')).status).toBe(200);
    await sleep(100);
    expect(first.texts()).toEqual(['refused']); // not sent again on this socket
    const [seen] = first.envelopes();
    expect(await rows(bob)).toEqual([{ id: seen?.id, text: 'refused' }]);
    await first.close();
    await redeliveredOnce(bob, seen?.id);
  });

  it('a send that finds a write for its device under way waits for it, then goes first with no write of its own', async () => {
    const [alice, bob] = await pair(patient);
    const seqBefore = await queueSeq(bob);
    // A socket that has read a stored envelope knows its queue position: an insert's hand-over
    // then goes straight out (to a socket at position 0 it would cost a read, and the read would
    // keep "two" from going first: a different case).
    expect((await alice.send(bob.accountId, [bob.address()], 'zero')).status).toBe(200);
    const socket = await caughtUp(patient, bob, null);
    const [zero] = socket.requests.filter((r) => r.verb === 'envelope');
    socket.respond(zero?.id as number, 200);
    await expect.poll(() => rows(bob), { timeout: 5_000 }).toEqual([]);
    const blocker = await patient.relay.context.database.pool.connect();
    let two: Promise<HttpResult> | undefined;
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE envelopes IN ACCESS EXCLUSIVE MODE');
      const one = alice.send(bob.accountId, [bob.address()], 'one');
      await socket.until(() => socket.envelopes().length === 2);
      // Unanswered past its window, "one" is being written: the lock holds its insert.
      await sleep(1_200);
      two = alice.send(bob.accountId, [bob.address()], 'two');
      await sleep(250);
      expect(socket.envelopes()).toHaveLength(2); // "two" waits for the write, not sent yet
      await blocker.query('ROLLBACK');
      expect((await one).status).toBe(200);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    await socket.until(() => socket.envelopes().length === 3, 5_000, '"two" delivered first');
    for (const frame of socket.requests.filter((r) => r.verb === 'envelope').slice(1)) {
      socket.respond(frame.id, 200);
    }
    expect((await two)?.status).toBe(200);
    expect(socket.texts()).toEqual(['zero', 'one', 'two']);
    // "zero" and "one" took queue positions, "two" none; the late answer deletes "one"'s row.
    expect(await queueSeq(bob)).toBe(seqBefore + 2);
    await expect.poll(() => rows(bob), { timeout: 5_000 }).toEqual([]);
    await socket.close();
  });

  it('a write for a device waits for what went to it first: the queue keeps the socket order', async () => {
    const [alice, bob] = await pair(narrow);
    const first = await caughtUp(narrow, bob, null);
    const one = alice.send(bob.accountId, [bob.address()], 'one');
    await first.until(() => first.envelopes().length === 1);
    // The window (1) is full: this one cannot go first; it is written, after "one" is decided.
    const two = alice.send(bob.accountId, [bob.address()], 'two');
    expect((await Promise.all([one, two])).map((result) => result.status)).toEqual([200, 200]);
    expect((await rows(bob)).map((row) => row.text)).toEqual(['one', 'two']);
    await first.close();
    const second = await caughtUp(narrow, bob);
    await second.until(() => second.envelopes().length === 2);
    expect(second.texts()).toEqual(['one', 'two']);
    await second.close();
  });

  it('does not overtake what another instance committed before the send, its wake-up still on its way', async () => {
    const [alice, bob] = await pair(relay);
    const socket = await caughtUp(relay, bob);
    // No wake-ups reach this instance for now: it cannot know of the row below from a NOTIFY.
    await cutListeners(relay);
    await storeElsewhere(relay, bob, 'committed first');
    expect((await alice.send(bob.accountId, [bob.address()], 'sent after')).status).toBe(200);
    await socket.until(() => socket.envelopes().length === 2, 10_000, 'both envelopes');
    expect(socket.texts()).toEqual(['committed first', 'sent after']);
    await socket.close();
  });

  it('a relay killed in the window never said "accepted", and the sender\'s retry is delivered', async () => {
    const [alice, bob] = await pair(relay);
    const doomed = await spawnRelay(database.url, { WS_DIRECT_WINDOW_MS: '1000' });
    try {
      alice.baseUrl = doomed.url;
      const socket = await caughtUp({ ...relay, wsUrl: doomed.wsUrl }, bob, null);
      // The connection dies with the relay: no acceptance.
      const outcome = alice.send(bob.accountId, [bob.address()], 'in the window').then(
        (result) => result.status,
        () => 'connection lost',
      );
      await socket.until(() => socket.envelopes().length === 1);
      await doomed.stop('SIGKILL');
      expect(await outcome).not.toBe(200);
      expect(await rows(bob)).toEqual([]);
      // The sender keeps the message and tries again elsewhere; the device may have it already
      // (the client core drops a repeat by the message id inside the content).
      alice.baseUrl = relay.url;
      expect((await alice.send(bob.accountId, [bob.address()], 'in the window')).status).toBe(200);
      const again = await caughtUp(relay, bob);
      await again.until(() => again.envelopes().length === 1);
      expect(again.texts()).toEqual(['in the window']);
      await again.close();
    } finally {
      await doomed.stop('SIGKILL');
    }
  });
});
