import { describe, expect, it } from 'vitest';
import { decodeContent, type Content } from '../src/content.ts';
import { ClientError } from '../src/errors.ts';
import { MemoryStore } from '../src/store.ts';
import {
  checkSyncCopyDelay,
  randomBetween,
  SyncCopies,
  type SyncCopyDelay,
} from '../src/sync-copies.ts';
import { accountIdOf } from '../src/testing/ids.ts';
import { CapturingLogger } from './support/fakes.ts';

const ALICE = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');
const DELAY: SyncCopyDelay = { minMs: 10_000, maxMs: 20_000 };

/** Copies over a MemoryStore, a fake sender and a clock the test moves; `byte` fills the CSPRNG. */
const setup = (byte = 0, delay: SyncCopyDelay = DELAY) => {
  const store = new MemoryStore();
  const clock = { now: 1_000_000 };
  const sent: Content[] = [];
  const answers: (Error | undefined)[] = [];
  let ids = 0;
  const copies = new SyncCopies({
    store,
    sender: {
      send: async (to, plaintext) => {
        expect(to).toBe(ALICE);
        const answer = answers.shift();
        if (answer) throw answer;
        sent.push(decodeContent(plaintext));
        return true;
      },
    },
    self: () => ALICE,
    now: () => clock.now,
    randomBytes: (n) => new Uint8Array(n).fill(byte),
    newId: () => `copy-${ids++}`,
    delay,
    logger: new CapturingLogger(),
  });
  const text = (id: string): Content => ({ kind: 'text', id, sentAt: clock.now, text: id });
  return { store, clock, sent, answers, copies, text };
};

describe('copies to one’s own devices', () => {
  it('draws each wait uniformly from the CSPRNG, within the window', () => {
    expect(randomBetween((n) => new Uint8Array(n), 10, 20)).toBe(10);
    expect(randomBetween((n) => new Uint8Array(n).fill(255), 10, 20)).toBe(20);
    expect(randomBetween((n) => new Uint8Array(n).fill(128), 0, 99)).toBe(50);
    expect(() => checkSyncCopyDelay({ minMs: 5, maxMs: 4 })).toThrow(RangeError);
    expect(() => checkSyncCopyDelay({ minMs: 0, maxMs: 3_600_001 })).toThrow(RangeError);
    expect(() => checkSyncCopyDelay({ minMs: 0.5, maxMs: 1 })).toThrow(RangeError);
    expect(checkSyncCopyDelay({ minMs: 0, maxMs: 0 })).toEqual({ minMs: 0, maxMs: 0 });
  });

  it('stores the copy for later and sends it only once its time has come', async () => {
    const { store, clock, sent, copies, text } = setup(255);
    const message = text('m1');
    await copies.queue(BOB, message);
    const [entry] = await store.outbox();
    expect(entry).toMatchObject({ recipient: ALICE, notBefore: clock.now + DELAY.maxMs });
    expect(copies.isCopy(entry!)).toBe(true);
    await copies.sendDue();
    expect(sent).toEqual([]);
    clock.now += DELAY.maxMs;
    await copies.sendDue();
    expect(sent).toEqual([
      { kind: 'sync', id: 'copy-0', sentAt: message.sentAt, to: BOB, content: message },
    ]);
    expect(await store.outbox()).toEqual([]);
  });

  it('keeps a copy refused for now with a new random time, drops one refused for good', async () => {
    const { store, clock, sent, answers, copies, text } = setup();
    await copies.queue(BOB, text('kept'));
    await copies.queue(BOB, text('dropped'));
    await copies.queue(BOB, text('unreachable'));
    clock.now += DELAY.maxMs;
    answers.push(
      new ClientError('RELAY_REFUSED', 'rate limited', 'RATE_LIMITED'),
      new ClientError('SEND_FAILED', 'no'),
      new ClientError('RELAY_UNREACHABLE', 'down'),
    );
    await expect(copies.sendDue()).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    const left = await store.outbox();
    expect(left.map((e) => e.id)).toEqual(['copy-0', 'copy-2']);
    for (const entry of left) expect(entry.notBefore).toBe(clock.now + DELAY.minMs);
    clock.now += DELAY.minMs;
    await copies.sendDue();
    expect(sent.map((c) => c.kind === 'sync' && c.content.id)).toEqual(['kept', 'unreachable']);
    expect(await store.outbox()).toEqual([]);
  });

  it('drops the waiting copy of a sent message that disappeared, and only that one', async () => {
    const { store, copies, text, clock } = setup();
    await copies.queue(BOB, text('gone'));
    await copies.queue(BOB, text('stays'));
    const message = {
      conversation: BOB,
      text: 'gone',
      sentAt: clock.now,
      receivedAt: clock.now,
      status: 'sent' as const,
    };
    await copies.dropCopiesOf([
      { ...message, id: 'gone', direction: 'out' },
      { ...message, id: 'stays', direction: 'in' },
      { ...message, id: 'stays', conversation: ALICE, direction: 'out' },
    ]);
    const left = (await store.outbox()).map((e) => decodeContent(e.content));
    expect(left.map((c) => c.kind === 'sync' && c.content.id)).toEqual(['stays']);
  });

  it('sends by a timer while started, and not after stop', async () => {
    const { store, sent, copies: zero, text } = setup(0, { minMs: 0, maxMs: 0 });
    await zero.start();
    await zero.queue(BOB, text('by the timer'));
    await expect.poll(() => sent.length).toBe(1);
    zero.stop();
    await zero.queue(BOB, text('waits'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent).toHaveLength(1);
    expect((await store.outbox()).map((e) => e.id)).toHaveLength(1);
  });
});
