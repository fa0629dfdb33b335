import { EventEmitter } from 'node:events';
import pino from 'pino';
import type { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import type { AccountId, DeviceId } from '@privcomm/wire';
import { createMetrics } from '../src/metrics.ts';
import type { QueueRead, StoredEnvelope } from '../src/repositories/envelopes.ts';
import { ConnectionRegistry } from '../src/ws/connection-registry.ts';
import { DeviceSocket, type DeviceSocketDeps } from '../src/ws/device-socket.ts';

/**
 * When the socket reads the queue (unit test of its logic with a fake socket and queue): the
 * insert's hand-over and its NOTIFY must not each cost a read, and nothing announced may be
 * forgotten. The real path is covered by messages and multi-instance integration tests.
 */
class FakeSocket extends EventEmitter {
  readonly sent: { type: string; id: number; verb?: string; body?: { id?: string } }[] = [];
  bufferedAmount = 0;
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.emit('close');
  }
  frame(value: object): void {
    this.emit('message', Buffer.from(JSON.stringify(value)), false);
  }
}

const accountId = '00000000-0000-4000-8000-000000000001' as AccountId;
const deviceId = 1 as DeviceId;
const envelope = (seq: number, bytes = 1): StoredEnvelope => ({
  seq,
  id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
  type: 1,
  content: Buffer.alloc(bytes, 'x'),
  urgent: false,
  storedHour: new Date(0).toISOString(),
});
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The queue read's bounds as the database applies them (envelopes.fetchAfterMany). */
const readBounded = (queue: StoredEnvelope[], read: QueueRead): StoredEnvelope[] => {
  const batch: StoredEnvelope[] = [];
  let before = 0;
  for (const envelope of queue.filter((e) => e.seq > read.afterSeq).slice(0, read.limit)) {
    if (before >= read.maxBytes) break;
    batch.push(envelope);
    before += envelope.content.length;
  }
  return batch;
};

const open = async (queue: StoredEnvelope[], windowBytes = 1_048_576) => {
  const socket = new FakeSocket();
  const reads: number[] = [];
  const deleted: number[] = [];
  const deps = {
    config: {
      authTimeoutMs: 5_000,
      idleTimeoutMs: 90_000,
      ackTimeoutMs: 60_000,
      window: 32,
      windowBytes,
    },
    log: pino({ level: 'silent' }),
    metrics: createMetrics(),
    registry: new ConnectionRegistry(pino({ level: 'silent' }), async () => new Set()),
    readQueue: async (read: QueueRead) => {
      reads.push(read.afterSeq);
      return readBounded(queue, read);
    },
    acks: { delete: ({ seq }: { seq: number }) => deleted.push(seq) },
    authenticate: async () => ({ device: { accountId, deviceId }, connectionSeq: 1 }),
    send: async () => ({ stored: 0 }),
  } as unknown as DeviceSocketDeps;
  const session = new DeviceSocket(socket as unknown as WebSocket, deps);
  socket.frame({ type: 'request', id: 1, verb: 'auth', body: { token: 't' } });
  for (let i = 0; i < 5; i += 1) await flush();
  const envelopeIds = () => socket.sent.filter((f) => f.verb === 'envelope').map((f) => f.body?.id);
  const ack = async () => {
    for (const f of socket.sent.filter((f) => f.verb === 'envelope')) {
      socket.frame({ type: 'response', id: f.id, status: 200 });
    }
    for (let i = 0; i < 5; i += 1) await flush();
  };
  /** Answers the oldest envelope not yet answered, as a client storing one at a time does. */
  const answered = new Set<number>();
  const ackOne = async () => {
    const next = socket.sent.find((f) => f.verb === 'envelope' && !answered.has(f.id));
    if (!next) return false;
    answered.add(next.id);
    socket.frame({ type: 'response', id: next.id, status: 200 });
    for (let i = 0; i < 5; i += 1) await flush();
    return true;
  };
  return { session, socket, reads, deleted, envelopeIds, ack, ackOne, queue };
};

describe('DeviceSocket queue reads', () => {
  it('sends what its own insert hands over without a read, even when the NOTIFY comes first', async () => {
    const { session, reads, envelopeIds, ack, queue } = await open([]);
    expect(reads).toEqual([0]); // the first read at login, which finds the queue empty
    session.expectOffer();
    queue.push(envelope(1));
    session.wake(1); // the insert's NOTIFY, before the insert's answer
    await flush();
    session.offer([envelope(1)]);
    await flush();
    expect(envelopeIds()).toEqual([envelope(1).id]);
    await ack();
    expect(reads).toEqual([0]); // neither the NOTIFY nor the acknowledgement read the queue
  });

  it('reads what another instance announced while its own offer was expected', async () => {
    const { session, reads, envelopeIds, queue } = await open([]);
    session.expectOffer();
    queue.push(envelope(1), envelope(2));
    session.wake(2); // another instance committed position 2 after this one's position 1
    session.offer([envelope(1)]);
    for (let i = 0; i < 5; i += 1) await flush();
    expect(envelopeIds()).toEqual([envelope(1).id, envelope(2).id]);
    expect(reads).toEqual([0, 1]);
  });

  it('reads on acknowledgement when the window could not take an offer', async () => {
    const queue = Array.from({ length: 32 }, (_, i) => envelope(i + 1));
    const { session, envelopeIds, ack } = await open(queue);
    expect(envelopeIds()).toHaveLength(32); // the window is full
    queue.push(envelope(33));
    session.offer([envelope(33)]); // refused: no room; it must come after the acknowledgements
    await ack();
    expect(envelopeIds().at(-1)).toBe(envelope(33).id);
  });

  it('drains a long queue in reads of half a window or more, not one per acknowledgement', async () => {
    const queue = Array.from({ length: 100 }, (_, i) => envelope(i + 1));
    const { reads, envelopeIds, ackOne } = await open(queue);
    while (await ackOne());
    expect(envelopeIds()).toEqual(queue.map((e) => e.id)); // all of them, in order, once
    // 32 at login, then 16 whenever half the window is free: 1 + 5 reads, the last one short.
    expect(reads).toEqual([0, 32, 48, 64, 80, 96]);
  });

  it('keeps no more than its bytes in flight, and reads on once answers free half of them', async () => {
    // 300 bytes each, 1,000 in flight at most: a read takes envelopes until those before the
    // next hold 1,000 bytes (the fourth has 900 before it), and the next read waits until at
    // most 500 are in flight.
    const queue = Array.from({ length: 10 }, (_, i) => envelope(i + 1, 300));
    const { socket, reads, envelopeIds, ackOne } = await open(queue, 1_000);
    expect(envelopeIds()).toHaveLength(4);
    expect(reads).toEqual([0]);
    await ackOne();
    await ackOne(); // 600 bytes in flight: not yet
    expect(reads).toEqual([0]);
    await ackOne(); // 300: read, with 700 bytes of room (three more)
    expect(reads).toEqual([0, 4]);
    expect(envelopeIds()).toHaveLength(7);
    while (await ackOne());
    expect(envelopeIds()).toEqual(queue.map((e) => e.id)); // all of them, in order, once
    // The last read came back short of the count and of the bytes: the end, said once.
    expect(socket.sent.filter((f) => f.verb === 'queue.empty')).toHaveLength(1);
  });

  it('lets an envelope larger than its bytes through on its own', async () => {
    const queue = [envelope(1, 5_000), envelope(2, 5_000)];
    const { envelopeIds, ackOne } = await open(queue, 1_000);
    expect(envelopeIds()).toEqual([queue[0]?.id]);
    await ackOne();
    expect(envelopeIds()).toEqual(queue.map((e) => e.id));
  });

  it('takes nothing first while a window of bytes waits unsent on its socket', async () => {
    const { session, socket } = await open([]);
    const nothingStored = { envelopes: 0, lastSeq: 0 };
    expect(session.canTakeDirect(nothingStored)).toBe(true);
    socket.bufferedAmount = 1_048_576; // the client stopped reading
    expect(session.canTakeDirect(nothingStored)).toBe(false);
    socket.bufferedAmount = 0;
    expect(session.canTakeDirect(nothingStored)).toBe(true);
  });

  it("lets a send waiting for this instance's write try again once its hand-over came, or the socket closed", async () => {
    const { session } = await open([]);
    const nothingStored = { envelopes: 0, lastSeq: 0 };
    expect(session.canTakeDirect(nothingStored)).toBe(true);
    session.expectOffer(); // an insert with an envelope for the device is under way here
    expect(session.canTakeDirect(nothingStored)).toBe(false);
    expect(session.waitingMayHelp(nothingStored)).toBe(true);
    let called = 0;
    session.afterCaughtUp(() => (called += 1));
    const cancelled = session.afterCaughtUp(() => (called += 100));
    cancelled(); // a send that gave up
    session.wake(1); // the insert's NOTIFY first: still waiting for the hand-over
    expect(called).toBe(0);
    session.offer([envelope(1)]);
    expect(called).toBe(1);
    expect(session.canTakeDirect({ envelopes: 1, lastSeq: 1 })).toBe(true); // sent here already
    // A socket that closes lets its waiters go (to be written, since it can take nothing now).
    session.expectOffer();
    session.afterCaughtUp(() => (called += 1));
    session.close(1000, 'bye');
    expect(called).toBe(2);
    expect(session.canTakeDirect(nothingStored)).toBe(false);
    expect(session.waitingMayHelp(nothingStored)).toBe(false);
  });

  it('lets a send waiting for a socket that is behind try again once the socket has caught up', async () => {
    const queue = Array.from({ length: 40 }, (_, i) => envelope(i + 1));
    const { session, ackOne, envelopeIds } = await open(queue); // 32 sent: the window is full
    const stored = { envelopes: 40, lastSeq: 40 }; // the queue as a send read it
    expect(session.canTakeDirect(stored)).toBe(false);
    expect(session.waitingMayHelp(stored)).toBe(true);
    let called = 0;
    session.afterCaughtUp(() => (called += 1));
    // Acknowledgements free the window, but 8 envelopes are still to be read and sent: not yet.
    for (let i = 0; i < 15; i += 1) await ackOne();
    expect(envelopeIds()).toHaveLength(32);
    expect(called).toBe(0);
    // The 16th frees half the window: the read that follows sends the last 8 and reaches the end
    // of the queue, with room left in the window: caught up.
    await ackOne();
    expect(envelopeIds()).toHaveLength(40);
    expect(called).toBe(1);
    expect(session.canTakeDirect(stored)).toBe(true);
    // Caught up already: no wait.
    session.afterCaughtUp(() => (called += 1));
    expect(called).toBe(2);
    // A closed socket: nothing to wait for.
    session.close(1000, 'bye');
    expect(session.waitingMayHelp(stored)).toBe(false);
  });

  it('reads the committed rows of envelopes it delivered first, acknowledged late, even when they filled its window', async () => {
    const { session, socket, reads, deleted, envelopeIds, queue } = await open([]);
    // A full window of envelopes delivered first (envelope(2) … envelope(33), not yet stored)...
    const rows = Array.from({ length: 32 }, (_, i) => envelope(i + 2));
    const handles = rows.map((row) =>
      session.sendDirect(
        { id: row.id, accountId, deviceId, type: 1, content: row.content, urgent: false },
        () => {},
      ),
    );
    // ... whose acknowledgements came after the window: the writer took them, and then they came.
    for (const handle of handles) handle.store();
    session.direct.writeStarted();
    for (const frame of socket.sent.filter((f) => f.verb === 'envelope')) {
      socket.frame({ type: 'response', id: frame.id, status: 200 });
    }
    // Committed behind a row another send wrote before them: the insert's NOTIFY announces them.
    queue.push(envelope(1), ...rows);
    session.direct.writeFinished();
    session.wake(33);
    for (let i = 0; i < 5; i += 1) await flush();
    // Read (they take no room in the window once answered), envelope(1) sent, the rest adopted
    // under the frames they went out with, and their rows deleted: they were acknowledged.
    expect(reads).toEqual([0, 0, 32]); // 32 rows (envelope(1) and 31 adopted), then the last
    expect(envelopeIds()).toEqual([...rows.map((row) => row.id), envelope(1).id]);
    expect(deleted).toEqual(rows.map((row) => row.seq));
    expect(session.direct.awaitingAnswer).toBe(0);
  });

  it('closes a socket whose envelopes delivered first go unanswered, as one with stored ones', async () => {
    const { session } = await open([]);
    const row = envelope(1);
    session.sendDirect(
      { id: row.id, accountId, deviceId, type: 1, content: row.content, urgent: false },
      () => {},
    );
    session.sweep(Date.now() + 59_000);
    expect(session.isClosed).toBe(false);
    session.sweep(Date.now() + 61_000); // ackTimeoutMs is 60 s here
    expect(session.isClosed).toBe(true);
  });
});
