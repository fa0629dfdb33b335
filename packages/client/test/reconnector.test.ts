import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '@privcomm/wire';
import { ClientError } from '../src/errors.ts';
import type { ConnectionStatus } from '../src/events.ts';
import {
  backoffDelay,
  MAX_BACKOFF_MS,
  Reconnector,
  type ReconnectorDeps,
} from '../src/reconnector.ts';
import { CapturingLogger, settle } from './support/fakes.ts';

type Attempt = 'ok' | ClientError;

/**
 * A scripted relay: each connection attempt takes the next outcome; `drop(code)` closes the
 * current connection. Sleeps return at once and are recorded.
 */
const setup = (attempts: Attempt[]) => {
  const statuses: ConnectionStatus[] = [];
  const sleeps: number[] = [];
  let resumes = 0;
  let disconnects = 0;
  let onLost: ((code: number, reason: string) => void) | undefined;
  let sleeping: (() => void) | undefined;
  const deps: ReconnectorDeps = {
    connect: async (lost) => {
      const next = attempts.shift();
      if (next === undefined) throw new Error('no more attempts scripted');
      if (next !== 'ok') throw next;
      onLost = lost;
    },
    resume: async () => void (resumes += 1),
    disconnect: async () => void (disconnects += 1),
    sleep: (ms) => {
      sleeps.push(ms);
      // The last scripted sleep blocks until the test releases it (or stop wakes the loop).
      return attempts.length > 0 ? Promise.resolve() : new Promise((r) => (sleeping = r));
    },
    random: () => 0,
    onStatus: (status) => statuses.push(status),
    logger: new CapturingLogger(),
  };
  const reconnector = new Reconnector(deps);
  return {
    reconnector,
    statuses,
    states: () => statuses.map((s) => s.state),
    sleeps,
    resumes: () => resumes,
    disconnects: () => disconnects,
    drop: (code: number) => onLost?.(code, ''),
    release: () => sleeping?.(),
  };
};

const unreachable = () => new ClientError('RELAY_UNREACHABLE', 'connection refused');

describe('reconnector', () => {
  it('retries with exponential backoff until connected, then resumes once', async () => {
    const t = setup([unreachable(), unreachable(), unreachable(), 'ok']);
    const running = t.reconnector.run();
    await settle();
    expect(t.states()).toEqual([
      'connecting',
      'offline',
      'connecting',
      'offline',
      'connecting',
      'offline',
      'connecting',
      'online',
    ]);
    // random() = 0: the fixed half of 1 s, 2 s, 4 s.
    expect(t.sleeps).toEqual([500, 1000, 2000]);
    expect(t.statuses[1]).toMatchObject({ retryInMs: 500, error: { code: 'RELAY_UNREACHABLE' } });
    expect(t.resumes()).toBe(1);
    await t.reconnector.stop();
    await running;
    expect(t.states().at(-1)).toBe('offline');
  });

  it('reconnects after a lost connection (relay restart) and resumes again', async () => {
    const t = setup(['ok', unreachable(), 'ok']);
    const running = t.reconnector.run();
    await settle();
    t.drop(CLOSE_CODES.GOING_AWAY);
    await settle();
    expect(t.states()).toEqual([
      'connecting',
      'online',
      'offline',
      'connecting',
      'offline',
      'connecting',
      'online',
    ]);
    // Back to the first delay after a connection that worked.
    expect(t.sleeps).toEqual([500, 1000]);
    expect(t.resumes()).toBe(2);
    await t.reconnector.stop();
    await running;
  });

  it.each([
    [CLOSE_CODES.UNAUTHENTICATED, 'RELAY_REFUSED'],
    [CLOSE_CODES.CONNECTED_ELSEWHERE, 'CONNECTED_ELSEWHERE'],
  ])('stops for good when the relay closes with %i', async (code, errorCode) => {
    const t = setup(['ok', 'ok']);
    const running = t.reconnector.run();
    await settle();
    t.drop(code);
    await expect(running).rejects.toMatchObject({ code: errorCode });
    expect(t.states()).toEqual(['connecting', 'online', 'stopped']);
    expect(t.reconnector.status.error?.code).toBe(errorCode);
  });

  it('stops for good when the relay refuses the device, but retries a rate limit or an outage', async () => {
    const t = setup([
      new ClientError('RELAY_REFUSED', 'slow down', 'RATE_LIMITED'),
      new ClientError('RELAY_REFUSED', 'database down', 'UNAVAILABLE'),
      new ClientError('NOT_A_RELAY', 'captive portal'),
      new ClientError('RELAY_REFUSED', 'removed', 'SIGNATURE_INVALID'),
    ]);
    await expect(t.reconnector.run()).rejects.toMatchObject({ relayCode: 'SIGNATURE_INVALID' });
    expect(t.sleeps).toHaveLength(3);
    expect(t.states().at(-1)).toBe('stopped');
  });

  it('retryNow ends the wait before the next attempt at once', async () => {
    const t = setup([unreachable()]);
    const running = t.reconnector.run();
    await settle();
    expect(t.states()).toEqual(['connecting', 'offline']);
    t.reconnector.retryNow();
    await settle();
    // The next attempt ran (and, with no attempt scripted, failed) without the sleep ending.
    expect(t.states()).toEqual(['connecting', 'offline', 'connecting', 'offline']);
    await t.reconnector.stop();
    await running;
  });

  it('stop during a wait ends the loop at once', async () => {
    const t = setup([unreachable()]);
    const running = t.reconnector.run();
    await settle();
    expect(t.states()).toEqual(['connecting', 'offline']);
    await t.reconnector.stop();
    await running;
    expect(t.states()).toEqual(['connecting', 'offline', 'offline']);
    expect(t.disconnects()).toBe(1);
  });

  it('backoff stays between half and all of a cap that doubles up to the maximum', () => {
    fc.assert(
      fc.property(
        fc.nat(100),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (failures, r) => {
          const cap = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(failures, 16));
          const delay = backoffDelay(failures, () => r);
          expect(delay).toBeGreaterThanOrEqual(cap / 2);
          expect(delay).toBeLessThanOrEqual(cap);
        },
      ),
    );
  });
});
