import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { QueuedEnvelopeKey } from '../src/repositories/envelopes.ts';
import { ACK_RETRY_ROUNDS, AcknowledgementDeletes } from '../src/services/acknowledgements.ts';

const unavailable = (): Error => Object.assign(new Error('connection lost'), { code: '08006' });
const key = (seq: number): QueuedEnvelopeKey => ({ accountId: 'a', deviceId: 1, seq });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const until = async (condition: () => boolean): Promise<void> => {
  for (let i = 0; !condition(); i += 1) {
    if (i > 2_000) throw new Error('condition not met');
    await sleep(1);
  }
};

describe('AcknowledgementDeletes', () => {
  it('retries every key whose delete failed while the database was away, together, on one timer', async () => {
    let down = true;
    const calls: number[][] = [];
    const deleted = new Set<number>();
    const acks = new AcknowledgementDeletes(
      async (keys) => {
        calls.push(keys.map((k) => k.seq));
        if (down) throw unavailable();
        for (const k of keys) deleted.add(k.seq);
      },
      pino({ level: 'silent' }),
      5,
    );
    for (let seq = 1; seq <= 50; seq += 1) acks.delete(key(seq));
    await until(() => acks.pendingRetries === 50);
    const failedCalls = calls.length;
    down = false;
    await until(() => deleted.size === 50);
    // One retry round deletes all 50 in one statement, not 50 statements (one timer per key).
    expect(calls.length).toBe(failedCalls + 1);
    expect(calls.at(-1)).toHaveLength(50);
    expect(acks.pendingRetries).toBe(0);
    acks.stop();
  });

  it('gives up after ACK_RETRY_ROUNDS rounds (the envelope comes again on the next connection)', async () => {
    let attempts = 0;
    const acks = new AcknowledgementDeletes(
      async () => {
        attempts += 1;
        throw unavailable();
      },
      pino({ level: 'silent' }),
      1,
    );
    acks.delete(key(1));
    await until(() => attempts === ACK_RETRY_ROUNDS + 1 && acks.pendingRetries === 0);
    await sleep(20);
    expect(attempts).toBe(ACK_RETRY_ROUNDS + 1);
    acks.stop();
  });

  it('does not retry a failure that is not the database being away', async () => {
    let attempts = 0;
    const acks = new AcknowledgementDeletes(
      async () => {
        attempts += 1;
        throw new Error('syntax error');
      },
      pino({ level: 'silent' }),
      1,
    );
    acks.delete(key(1));
    await sleep(20);
    expect(attempts).toBe(1);
    expect(acks.pendingRetries).toBe(0);
  });
});
