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

  /** Takes one token for `key` or throws RATE_LIMITED with the seconds until the next one. */
  take(key: string): void {
    const now = this.now();
    const refillMs = this.limit.refillSeconds * 1000;
    const bucket = this.buckets.get(key);
    const tokens = bucket
      ? Math.min(this.limit.burst, bucket.tokens + (now - bucket.updatedMs) / refillMs)
      : this.limit.burst;
    if (tokens < 1) {
      // Rounded to the clock's millisecond first, so float noise cannot add a whole second.
      const waitMs = Math.round((1 - tokens) * refillMs);
      const retryAfterSeconds = Math.max(1, Math.ceil(waitMs / 1000));
      throw new RelayError('RATE_LIMITED', undefined, { retryAfterSeconds });
    }
    if (!bucket && this.buckets.size >= this.maxKeys) this.prune(now);
    this.buckets.set(key, { tokens: tokens - 1, updatedMs: now });
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
