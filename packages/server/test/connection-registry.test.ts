import { CLOSE_CODES } from '@privcomm/wire';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { StoredEnvelope } from '../src/repositories/envelopes.ts';
import { ConnectionRegistry, type DeviceSession } from '../src/ws/connection-registry.ts';

/** A session as the registry sees it; `closed` ones throw on their address, as DeviceSocket does. */
const session = (deviceId: number, closed = false) => {
  const offers: (readonly StoredEnvelope[])[] = [];
  const fake = {
    get accountId() {
      if (closed) throw new Error('socket is not authenticated');
      return 'account';
    },
    get deviceId() {
      if (closed) throw new Error('socket is not authenticated');
      return deviceId;
    },
    offer: (envelopes: readonly StoredEnvelope[]) => offers.push(envelopes),
  };
  return { fake: fake as unknown as DeviceSession, offers };
};

describe('ConnectionRegistry.offer', () => {
  it('gives every expecting session its one offer, even after one that closed meanwhile', () => {
    const registry = new ConnectionRegistry(pino({ level: 'silent' }), async () => new Set());
    const gone = session(1, true);
    const waiting = session(2);
    // Both were told before the insert that an offer follows; the first closed during it.
    expect(() => registry.offer(new Map(), [gone.fake, waiting.fake])).not.toThrow();
    // Without its offer, the second would swallow every later wake-up (it waits for the offer).
    expect(waiting.offers).toEqual([[]]);
    registry.closeAll(1001, 'test');
  });
});

describe('ConnectionRegistry.onResync', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A device's open session that counts its wake-ups and remembers how it was closed. */
  const live = (deviceId: number) => {
    const state = { wakes: 0, closedWith: undefined as number | undefined };
    const fake = {
      accountId: 'account',
      deviceId,
      connectionSeq: 1,
      wake: () => (state.wakes += 1),
      close: (code: number) => (state.closedWith = code),
      sweep: () => {},
    };
    return { fake: fake as unknown as DeviceSession, state };
  };

  it('wakes the sessions of existing devices and closes those of removed ones', async () => {
    const kept = live(1);
    const removed = live(2);
    const registry = new ConnectionRegistry(pino({ level: 'silent' }), async () => {
      return new Set([kept.fake]);
    });
    registry.add(kept.fake);
    registry.add(removed.fake);
    registry.onResync();
    await vi.waitFor(() => expect(kept.state.wakes).toBe(1));
    expect(removed.state).toEqual({ wakes: 0, closedWith: CLOSE_CODES.UNAUTHENTICATED });
    registry.closeAll(1001, 'test');
  });

  it('wakes every other session when one fails to wake', async () => {
    const failing = live(1);
    (failing.fake as { wake: () => void }).wake = () => {
      throw new Error('socket is not authenticated');
    };
    const other = live(2);
    const registry = new ConnectionRegistry(pino({ level: 'silent' }), async (sessions) => {
      return new Set(sessions);
    });
    registry.add(failing.fake);
    registry.add(other.fake);
    registry.onResync();
    await vi.waitFor(() => expect(other.state.wakes).toBe(1));
    registry.closeAll(1001, 'test');
  });

  it('tries a failed check again until it succeeds, then wakes every session (none waits for its next message)', async () => {
    vi.useFakeTimers();
    const session = live(1);
    let checks = 0;
    const registry = new ConnectionRegistry(pino({ level: 'silent' }), async (sessions) => {
      checks += 1;
      if (checks <= 2) throw new Error('Connection terminated unexpectedly');
      return new Set(sessions);
    });
    registry.add(session.fake);
    registry.onResync();
    await vi.advanceTimersByTimeAsync(0);
    expect({ checks, wakes: session.state.wakes }).toEqual({ checks: 1, wakes: 0 });
    await vi.advanceTimersByTimeAsync(500); // the first retry
    expect({ checks, wakes: session.state.wakes }).toEqual({ checks: 2, wakes: 0 });
    await vi.advanceTimersByTimeAsync(999); // the second waits twice as long
    expect(checks).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect({ checks, wakes: session.state.wakes }).toEqual({ checks: 3, wakes: 1 });
    await vi.advanceTimersByTimeAsync(60_000); // and that was the last
    expect({ checks, wakes: session.state.wakes }).toEqual({ checks: 3, wakes: 1 });
    registry.closeAll(1001, 'test');
  });

  /** A registry whose device check fails (after `ms`), and when (fake clock) each one began. */
  const failing = (ms = 0) => {
    const at: number[] = [];
    const registry = new ConnectionRegistry(pino({ level: 'silent' }), async () => {
      at.push(Date.now());
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      throw new Error('Connection terminated unexpectedly');
    });
    registry.add(live(1).fake);
    return { registry, at };
  };

  it('waits at most 8 s between tries, and a later outage takes over from an earlier one', async () => {
    vi.useFakeTimers({ now: 0 });
    const { registry, at } = failing();
    registry.onResync();
    await vi.advanceTimersByTimeAsync(30_000);
    // 0, then 0.5, 1, 2, 4 and 8 s apart, and 8 s from there on.
    expect(at).toEqual([0, 500, 1_500, 3_500, 7_500, 15_500, 23_500]);
    // Another outage: its resync starts over, and the earlier one's retries stop.
    const from = at.length;
    registry.onResync();
    await vi.advanceTimersByTimeAsync(1_600);
    expect(at.slice(from).map((time) => time - 30_000)).toEqual([0, 500, 1_500]);
    registry.closeAll(1001, 'test');
  });

  it('keeps one line of retries when an outage ends while the last one is still being checked', async () => {
    vi.useFakeTimers({ now: 0 });
    const { registry, at } = failing(100);
    registry.onResync(); // its check fails at 100 ms: superseded by then, it is not tried again
    await vi.advanceTimersByTimeAsync(50);
    registry.onResync(); // fails at 150 ms, tried again 0.5 s later, then 1 s after that failure
    await vi.advanceTimersByTimeAsync(1_950);
    expect(at).toEqual([0, 50, 650, 1_750]);
    registry.closeAll(1001, 'test');
  });

  it('stops trying once the registry is closed', async () => {
    vi.useFakeTimers({ now: 0 });
    const { registry, at } = failing();
    registry.onResync();
    await vi.advanceTimersByTimeAsync(600);
    expect(at).toEqual([0, 500]);
    registry.closeAll(1001, 'test');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(at).toEqual([0, 500]);
  });
});
