import { describe, expect, it } from 'vitest';
import { DirectDeliveries } from '../src/services/direct-deliveries.ts';

/**
 * One socket's bookkeeping of envelopes delivered first: what an answer finds, in whichever order
 * answers come and whether or not the envelope was handed to storage meanwhile.
 */
const setup = () => {
  const direct = new DirectDeliveries();
  const answers: string[] = [];
  const add = (requestId: number) =>
    direct.add(requestId, `envelope-${requestId}`, (acked) =>
      answers.push(`${requestId}:${acked ? 'acked' : 'refused'}`),
    );
  return { direct, answers, add };
};

describe('direct deliveries', () => {
  it('finds answers in any order, and ignores a second answer and unknown requests', () => {
    const { direct, answers, add } = setup();
    for (const id of [1, 2, 3, 4]) add(id);
    expect(direct.awaitingAnswer).toBe(4);
    expect(direct.answer(3, true)).toBe(true);
    expect(direct.answer(1, true)).toBe(true);
    expect(direct.answer(3, true)).toBe(false); // acknowledged: no longer tracked
    expect(direct.answer(9, true)).toBe(false);
    expect(direct.answer(4, false)).toBe(true);
    expect(direct.answer(4, true)).toBe(true); // a second answer to a refusal: ignored
    expect(answers).toEqual(['3:acked', '1:acked', '4:refused']);
    expect(direct.awaitingAnswer).toBe(1);
  });

  it('lets stores wait until every envelope is acknowledged or handed to storage', () => {
    const { direct, add } = setup();
    const first = add(1);
    add(2);
    let released = 0;
    direct.afterDecided(() => (released += 1));
    expect(direct.answer(2, true)).toBe(true);
    expect(released).toBe(0);
    first.store();
    direct.releaseWaiters();
    expect(released).toBe(1);
  });

  it('lets stores go once a refused envelope is handed to storage, which its row then finds', () => {
    const { direct, answers, add } = setup();
    const refused = add(1);
    expect(direct.answer(1, false)).toBe(true);
    expect(answers).toEqual(['1:refused']);
    let released = 0;
    direct.afterDecided(() => (released += 1));
    expect(released).toBe(0); // refused, but not yet handed to storage
    refused.store();
    direct.releaseWaiters();
    expect(released).toBe(1);
    expect(direct.committed('envelope-1')).toMatchObject({ requestId: 1, answer: 'refused' });
  });

  it('keeps nothing of a closed socket that the deadline hands to storage afterwards', () => {
    const { direct, add } = setup();
    const first = add(1);
    direct.closed();
    let released = 0;
    direct.afterDecided(() => (released += 1));
    expect(released).toBe(0);
    first.store();
    direct.releaseWaiters();
    expect(released).toBe(1);
    expect(direct.committed('envelope-1')).toBeUndefined();
    expect(direct.answer(1, true)).toBe(false);
    expect(direct.awaitingAnswer).toBe(0);
  });

  it('finds an envelope handed to storage by its late answer and by its committed row', () => {
    const { direct, answers, add } = setup();
    add(1).store();
    add(2).store();
    add(3);
    expect(direct.awaitingAnswer).toBe(3);
    expect(direct.answer(2, true)).toBe(true); // after the window: its commit finds it
    expect(answers).toEqual([]);
    expect(direct.awaitingAnswer).toBe(2);
    expect(direct.committed('envelope-2')).toMatchObject({ requestId: 2, answer: 'acked' });
    expect(direct.committed('envelope-2')).toBeUndefined(); // once
    expect(direct.committed('envelope-3')).toBeUndefined(); // not handed to storage
    expect(direct.committed('envelope-1')).toMatchObject({ requestId: 1, answer: undefined });
    expect(direct.answer(1, true)).toBe(false); // now the queue's to track
    expect(direct.awaitingAnswer).toBe(1);
  });

  it('gives the oldest unanswered send time, handed to storage or not', async () => {
    const { direct, add } = setup();
    const later = () => new Promise((resolve) => setTimeout(resolve, 5));
    expect(direct.oldestUnansweredAt()).toBeUndefined();
    const first = add(1);
    const firstAt = direct.oldestUnansweredAt() as number;
    await later();
    const second = add(2);
    await later();
    add(3);
    first.store();
    expect(direct.oldestUnansweredAt()).toBe(firstAt);
    expect(direct.answer(1, true)).toBe(true);
    const secondAt = direct.oldestUnansweredAt() as number;
    expect(secondAt).toBeGreaterThan(firstAt);
    second.store();
    expect(direct.oldestUnansweredAt()).toBe(secondAt);
    expect(direct.answer(2, false)).toBe(true);
    expect(direct.oldestUnansweredAt()).toBeGreaterThan(secondAt);
    expect(direct.answer(3, true)).toBe(true);
    expect(direct.oldestUnansweredAt()).toBeUndefined();
  });

  it('refuses what is unanswered when the socket closes, and forgets a failed write', () => {
    const { direct, answers, add } = setup();
    add(1);
    add(2).store();
    const third = add(3);
    add(4);
    expect(direct.answer(4, true)).toBe(true);
    third.store();
    third.forget(); // its write failed: nothing will come back for it
    third.forget(); // twice: counted once
    expect(direct.awaitingAnswer).toBe(2);
    direct.closed();
    expect(answers).toEqual(['4:acked', '1:refused']);
    expect(direct.awaitingAnswer).toBe(0);
    expect(direct.answer(2, true)).toBe(false);
  });
});
