import { describe, expect, it } from 'vitest';
import type { NewEnvelope } from '../src/repositories/envelopes.ts';
import { DeliverFirst, type DirectTarget } from '../src/services/deliver-first.ts';
import { DirectDeliveries } from '../src/services/direct-deliveries.ts';

/**
 * DeliverFirst's decisions with several devices per send, against fake sockets (the real
 * bookkeeping, DirectDeliveries, behind each): the integration tests cover one device per send.
 */
const WINDOW_MS = 30;
/** How long a send waits for a write under way that does not finish (the relay: 5 s). */
const LONGEST_WRITE_WAIT_MS = 1_000;

const row = (deviceId: number, text: string): NewEnvelope => ({
  id: `${deviceId}-${text}`,
  accountId: 'account',
  deviceId,
  type: 1,
  content: Buffer.from(text),
  urgent: false,
});

/** A caught-up socket that records what went out first and lets the test answer it. */
class FakeSocket implements DirectTarget {
  private readonly waiters = new Set<() => void>();
  readonly direct = new DirectDeliveries(() => {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter();
  });
  readonly sent: string[] = [];
  private nextId = 1;
  private readonly ids = new Map<string, number>();

  /** Waiters still registered: one that gave up must not stay behind. */
  get waiting(): number {
    return this.waiters.size;
  }

  /** Behind for a reason other than a write (a read, a full window): the test sets it. */
  behind = false;

  private get writing(): boolean {
    return this.direct.storesUnderWay > 0;
  }

  heldBackByWrites(): boolean {
    return this.writing && !this.behind;
  }

  waitingMayHelp(): boolean {
    return this.writing || this.behind;
  }

  afterCaughtUp(callback: () => void): () => void {
    if (this.canTakeDirect()) {
      callback();
      return () => {};
    }
    this.waiters.add(callback);
    return () => this.waiters.delete(callback);
  }

  canTakeDirect(): boolean {
    return !this.writing && !this.behind;
  }

  sendDirect(envelope: NewEnvelope, onAnswer: (acked: boolean) => void) {
    const id = this.nextId++;
    this.ids.set(envelope.id, id);
    this.sent.push(envelope.content.toString());
    return this.direct.add(id, envelope.id, onAnswer);
  }

  answer(envelope: NewEnvelope, acked = true): void {
    this.direct.answer(this.ids.get(envelope.id) as number, acked);
  }
}

const setup = (write: (rows: readonly NewEnvelope[]) => Promise<void> = async () => {}) => {
  const sockets = new Map([
    [1, new FakeSocket()],
    [2, new FakeSocket()],
  ]);
  const written: string[][] = [];
  const deliverFirst = new DeliverFirst(
    (_account, deviceId) => sockets.get(deviceId),
    WINDOW_MS,
    async (rows) => {
      written.push(rows.map((r) => `${r.deviceId}:${r.content.toString()}`));
      await write(rows);
    },
    { directAcknowledged: { inc: () => {} }, directStored: { inc: () => {} } } as never,
    LONGEST_WRITE_WAIT_MS,
  );
  const nothingQueued = () => ({ registrationId: 1, envelopes: 0, bytes: 0, lastSeq: 0 });
  return { sockets, written, deliverFirst, nothingQueued };
};

describe('DeliverFirst with several devices', () => {
  it('accepts with nothing written once every device acknowledged', async () => {
    const { sockets, written, deliverFirst, nothingQueued } = setup();
    const rows = [row(1, 'a'), row(2, 'a')];
    const delivered = deliverFirst.deliver(rows, nothingQueued);
    expect(delivered).toBeDefined();
    sockets.get(1)?.answer(rows[0] as NewEnvelope);
    sockets.get(2)?.answer(rows[1] as NewEnvelope);
    await delivered;
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS * 2));
    expect(written).toEqual([]);
  });

  it('writes only what was not acknowledged, at the deadline', async () => {
    const { sockets, written, deliverFirst, nothingQueued } = setup();
    const rows = [row(1, 'b'), row(2, 'b')];
    const delivered = deliverFirst.deliver(rows, nothingQueued);
    sockets.get(1)?.answer(rows[0] as NewEnvelope);
    await delivered;
    expect(written).toEqual([['2:b']]);
  });

  it('a refusal is written too, and not before the deadline', async () => {
    const { sockets, written, deliverFirst, nothingQueued } = setup();
    const rows = [row(1, 'c')];
    const started = Date.now();
    const delivered = deliverFirst.deliver(rows, nothingQueued);
    sockets.get(1)?.answer(rows[0] as NewEnvelope, false);
    expect(written).toEqual([]);
    await delivered;
    expect(Date.now() - started).toBeGreaterThanOrEqual(WINDOW_MS - 1);
    expect(written).toEqual([['1:c']]);
  });

  it('a write for a device waits behind what went to it first, in the order they went out', async () => {
    const { written, deliverFirst, nothingQueued } = setup();
    const first = deliverFirst.deliver([row(1, 'first'), row(2, 'first')], nothingQueued);
    const second = deliverFirst.deliver([row(1, 'second')], nothingQueued);
    // Device 2 still has "first" undecided: this write waits for it.
    const stored = deliverFirst.store([row(2, 'stored')]);
    await Promise.all([first, second, stored]);
    const ofDevice = (deviceId: number): string[] =>
      written.flat().filter((entry) => entry.startsWith(`${deviceId}:`));
    expect(ofDevice(1)).toEqual(['1:first', '1:second']);
    expect(ofDevice(2)).toEqual(['2:first', '2:stored']);
  });

  it('nothing goes first to a device with a write under way', async () => {
    const { deliverFirst, nothingQueued, written } = setup();
    const stored = deliverFirst.store([row(1, 'stored')]);
    expect(deliverFirst.deliver([row(1, 'later')], nothingQueued)).toBeUndefined();
    await stored;
    expect(written).toEqual([['1:stored']]);
  });

  it('a send that finds a write under way for its device waits for it, then goes first', async () => {
    let commit = (): void => {};
    const { sockets, deliverFirst, nothingQueued, written } = setup(
      () => new Promise((resolve) => (commit = resolve)),
    );
    const stored = deliverFirst.store([row(1, 'stored')]);
    const later = row(1, 'later');
    expect(deliverFirst.deliver([later], nothingQueued)).toBeUndefined();
    const done = deliverFirst.socketsCaughtUp([later], nothingQueued);
    commit();
    await stored;
    expect(await done).toBe(true);
    const delivered = deliverFirst.deliver([later], nothingQueued);
    expect(delivered).toBeDefined();
    sockets.get(1)?.answer(later);
    await delivered;
    expect(written).toEqual([['1:stored']]); // "later" needed no write
  });

  it('waits for a write under way past the window (a write of its own would commit after it), not without end', async () => {
    const { sockets, deliverFirst, nothingQueued } = setup(() => new Promise(() => {})); // a commit that never comes
    expect(await deliverFirst.socketsCaughtUp([row(1, 'idle')], nothingQueued)).toBe(false);
    void deliverFirst.store([row(1, 'stuck')]);
    const started = Date.now();
    expect(await deliverFirst.socketsCaughtUp([row(1, 'later')], nothingQueued)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(LONGEST_WRITE_WAIT_MS - 1);
    expect(sockets.get(1)?.waiting).toBe(0); // the send that gave up left no waiter behind
    // A device with no socket here is never delivered first: no reason to wait.
    expect(await deliverFirst.socketsCaughtUp([row(3, 'elsewhere')], nothingQueued)).toBe(false);
  });

  it('waits at most the window for a socket behind for another reason', async () => {
    const { sockets, deliverFirst, nothingQueued } = setup();
    (sockets.get(1) as FakeSocket).behind = true;
    const started = Date.now();
    expect(await deliverFirst.socketsCaughtUp([row(1, 'later')], nothingQueued)).toBe(false);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(WINDOW_MS - 1);
    expect(waited).toBeLessThan(LONGEST_WRITE_WAIT_MS); // not held as for a write
    expect(sockets.get(1)?.waiting).toBe(0);
  });

  it('waits only the window when a write is under way but the socket is behind anyway', async () => {
    const { sockets, deliverFirst, nothingQueued } = setup(() => new Promise(() => {})); // a commit that never comes
    void deliverFirst.store([row(1, 'stuck')]);
    (sockets.get(1) as FakeSocket).behind = true; // and, say, its window is full
    const started = Date.now();
    expect(await deliverFirst.socketsCaughtUp([row(1, 'later')], nothingQueued)).toBe(false);
    expect(Date.now() - started).toBeLessThan(LONGEST_WRITE_WAIT_MS);
    expect(sockets.get(1)?.waiting).toBe(0);
  });
});
