import pino from 'pino';
import { describe, expect, it } from 'vitest';
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
