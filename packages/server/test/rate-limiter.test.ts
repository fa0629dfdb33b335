import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../src/errors.ts';
import { RateLimiter } from '../src/services/rate-limiter.ts';

/** A clock the test moves by hand. */
const clock = () => {
  let ms = 1_700_000_000_000;
  return {
    now: () => ms,
    advance: (by: number) => {
      ms += by;
    },
  };
};

/** The seconds a refused take reports, or undefined if the take succeeded. */
const attempt = (limiter: RateLimiter, key: string): number | undefined => {
  try {
    limiter.take(key);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(RelayError);
    const relayError = error as RelayError;
    expect(relayError.code).toBe('RATE_LIMITED');
    expect(relayError.status).toBe(429);
    const seconds = relayError.extra.retryAfterSeconds;
    expect(Number.isInteger(seconds)).toBe(true);
    return seconds;
  }
};

const takes = (limiter: RateLimiter, key: string, count: number): number => {
  let granted = 0;
  for (let i = 0; i < count; i += 1) if (attempt(limiter, key) === undefined) granted += 1;
  return granted;
};

describe('RateLimiter', () => {
  it('check refuses like take, with the same delay, but takes nothing', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 10, refillSeconds: 60 }, time.now);
    for (let i = 0; i < 5; i += 1) limiter.check('a', 10);
    limiter.take('a', 8);
    let refused: RelayError | undefined;
    try {
      limiter.check('a', 5);
    } catch (error) {
      refused = error as RelayError;
    }
    expect(refused?.code).toBe('RATE_LIMITED');
    expect(refused?.extra.retryAfterSeconds).toBe(180);
    // Nothing was taken by the checks: exactly the 2 tokens left can still be taken.
    limiter.take('a', 2);
    expect(limiter.tryTake('a')).toBe(false);
  });

  it('allows a burst, then refuses', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 5, refillSeconds: 10 }, time.now);
    expect(takes(limiter, 'k', 5)).toBe(5);
    expect(attempt(limiter, 'k')).toBe(10);
    expect(takes(limiter, 'k', 20)).toBe(0);
  });

  it('refills one token per refill period, never beyond the burst', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 3, refillSeconds: 2 }, time.now);
    expect(takes(limiter, 'k', 3)).toBe(3);
    time.advance(1999);
    expect(attempt(limiter, 'k')).toBe(1);
    time.advance(1);
    expect(takes(limiter, 'k', 2)).toBe(1);
    time.advance(5000); // 2.5 tokens
    expect(takes(limiter, 'k', 5)).toBe(2);
    time.advance(3_600_000); // an hour idle: still only the burst
    expect(takes(limiter, 'k', 10)).toBe(3);
  });

  it('reports the whole seconds until the next token, at least 1', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 1, refillSeconds: 30 }, time.now);
    expect(attempt(limiter, 'k')).toBeUndefined();
    expect(attempt(limiter, 'k')).toBe(30);
    time.advance(10_000);
    expect(attempt(limiter, 'k')).toBe(20);
    time.advance(19_001);
    expect(attempt(limiter, 'k')).toBe(1); // 0.999 s rounds up
    time.advance(999);
    expect(attempt(limiter, 'k')).toBeUndefined();

    const fast = new RateLimiter({ burst: 1, refillSeconds: 0.25 }, time.now);
    expect(attempt(fast, 'k')).toBeUndefined();
    expect(attempt(fast, 'k')).toBe(1); // never 0: a client must wait at least a second
    time.advance(250);
    expect(attempt(fast, 'k')).toBeUndefined();
  });

  it('does not reset the refill when a take is refused', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 1, refillSeconds: 10 }, time.now);
    limiter.take('k');
    for (let second = 1; second < 10; second += 1) {
      time.advance(1000);
      expect(attempt(limiter, 'k')).toBe(10 - second);
    }
    time.advance(1000);
    expect(attempt(limiter, 'k')).toBeUndefined();
  });

  it('keeps keys apart', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 2, refillSeconds: 60 }, time.now);
    expect(takes(limiter, 'a', 3)).toBe(2);
    expect(takes(limiter, 'b', 3)).toBe(2);
    expect(takes(limiter, 'a', 1)).toBe(0);
  });

  it('at maxKeys drops full buckets first, keeping buckets that still limit', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 2, refillSeconds: 10 }, time.now, 3);
    expect(takes(limiter, 'oldest', 2)).toBe(2); // empty
    expect(takes(limiter, 'full', 1)).toBe(1); // one left
    expect(takes(limiter, 'busy', 2)).toBe(2); // empty
    time.advance(10_000); // oldest: 1 token, full: 2 (full), busy: 1
    expect(takes(limiter, 'new', 1)).toBe(1); // prunes only 'full'
    expect(takes(limiter, 'oldest', 2)).toBe(1);
    expect(takes(limiter, 'busy', 2)).toBe(1);
    expect(takes(limiter, 'new', 2)).toBe(1);
  });

  it('at maxKeys with no full bucket forgets the oldest key', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 1, refillSeconds: 1000 }, time.now, 3);
    for (const key of ['a', 'b', 'c']) limiter.take(key);
    limiter.take('d'); // forgets 'a'
    expect(attempt(limiter, 'a')).toBeUndefined(); // a fresh bucket; forgets 'b'
    expect(attempt(limiter, 'c')).toBe(1000);
    expect(attempt(limiter, 'd')).toBe(1000);
    expect(attempt(limiter, 'b')).toBeUndefined();
  });

  it('holds at most maxKeys buckets however many keys come', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 1, refillSeconds: 1000 }, time.now, 50);
    for (let i = 0; i < 5_000; i += 1) limiter.take(`key-${i}`);
    const buckets = Reflect.get(limiter, 'buckets') as Map<string, unknown>;
    expect(buckets.size).toBeLessThanOrEqual(50);
    // The most recent keys are still limited.
    expect(attempt(limiter, 'key-4999')).toBe(1000);
  });

  it('never grants more than burst + elapsed / refill tokens (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 30 }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 200 }),
        (burst, refillSeconds, gaps) => {
          const time = clock();
          const limiter = new RateLimiter({ burst, refillSeconds }, time.now);
          let granted = 0;
          let elapsed = 0;
          for (const gap of gaps) {
            time.advance(gap);
            elapsed += gap;
            const retry = attempt(limiter, 'k');
            if (retry === undefined) granted += 1;
            else expect(retry).toBeLessThanOrEqual(refillSeconds);
          }
          expect(granted).toBeLessThanOrEqual(burst + Math.floor(elapsed / (refillSeconds * 1000)));
          // Spaced a full refill apart, every take succeeds.
          time.advance(refillSeconds * 1000 * burst);
          for (let i = 0; i < 5; i += 1) {
            time.advance(refillSeconds * 1000);
            expect(attempt(limiter, 'k')).toBeUndefined();
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('takes a cost of several tokens (a byte budget), and says when that many are back', () => {
    const time = clock();
    // 1000 bytes that refill completely in 100 s: 10 bytes a second.
    const limiter = new RateLimiter({ burst: 1000, refillSeconds: 0.1 }, time.now);
    limiter.take('k', 600);
    limiter.take('k', 400);
    let refused: RelayError | undefined;
    try {
      limiter.take('k', 250);
    } catch (error) {
      refused = error as RelayError;
    }
    expect(refused?.code).toBe('RATE_LIMITED');
    expect(refused?.extra.retryAfterSeconds).toBe(25);
    // A refused take takes nothing: after 25 s the 250 are there.
    time.advance(25_000);
    expect(() => limiter.take('k', 250)).not.toThrow();
  });

  it('tryTake answers instead of throwing, and takes nothing when it answers false', () => {
    const time = clock();
    const limiter = new RateLimiter({ burst: 2, refillSeconds: 60 }, time.now);
    expect(limiter.tryTake('k')).toBe(true);
    expect(limiter.tryTake('k')).toBe(true);
    expect(limiter.tryTake('k')).toBe(false);
    expect(limiter.tryTake('other')).toBe(true);
    time.advance(60_000);
    expect(limiter.tryTake('k')).toBe(true);
    expect(limiter.tryTake('k')).toBe(false);
  });
});
