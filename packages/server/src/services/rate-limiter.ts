import type { RateLimit } from '../config.ts';
import { RelayError } from '../errors.ts';

/**
 * In-memory token buckets. Buckets live in this process only: with several instances a client
 * may get up to N times the limit, which we accept rather than write who-talks-to-whom keys
 * (sender → recipient, requester → target) into the shared database. Keys are never logged.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; updatedMs: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {}

  /**
   * Takes `cost` tokens for `key` (1 by default; bytes for a byte budget) or throws RATE_LIMITED
   * with the seconds until enough have come back.
   */
  take(key: string, cost = 1): void {
    const waitMs = this.attempt(key, cost);
    if (waitMs > 0) {
      // Rounded to the clock's millisecond first, so float noise cannot add a whole second.
      const retryAfterSeconds = Math.max(1, Math.ceil(Math.round(waitMs) / 1000));
      throw new RelayError('RATE_LIMITED', undefined, { retryAfterSeconds });
    }
  }

  /** Like take, but answers whether the tokens were there instead of throwing. */
  tryTake(key: string, cost = 1): boolean {
    return this.attempt(key, cost) === 0;
  }

  /** Takes the tokens and returns 0, or takes nothing and returns the milliseconds to wait. */
  private attempt(key: string, cost: number): number {
    const now = this.now();
    const refillMs = this.limit.refillSeconds * 1000;
    const bucket = this.buckets.get(key);
    const tokens = bucket
      ? Math.min(this.limit.burst, bucket.tokens + (now - bucket.updatedMs) / refillMs)
      : this.limit.burst;
    if (tokens < cost) return Math.max(1, (cost - tokens) * refillMs);
    if (!bucket && this.buckets.size >= this.maxKeys) this.prune(now);
    this.buckets.set(key, { tokens: tokens - cost, updatedMs: now });
    return 0;
  }

  /**
   * Drops full buckets (they behave exactly like absent ones), then the oldest while over the
   * cap. Called periodically too, so keys (who talks to whom) do not linger in memory.
   */
  prune(now: number = this.now()): void {
    const refillMs = this.limit.refillSeconds * 1000;
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.updatedMs) / refillMs >= this.limit.burst) {
        this.buckets.delete(key);
      }
    }
    while (this.buckets.size >= this.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
  }
}
