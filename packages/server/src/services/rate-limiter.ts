import type { RateLimit } from '../config.ts';
import { RelayError } from '../errors.ts';

/** Rounded to the clock's millisecond first, so float noise cannot add a whole second. */
const rateLimited = (waitMs: number): RelayError =>
  new RelayError('RATE_LIMITED', undefined, {
    retryAfterSeconds: Math.max(1, Math.ceil(Math.round(waitMs) / 1000)),
  });

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
    if (waitMs > 0) throw rateLimited(waitMs);
  }

  /** Throws like take when `cost` tokens are not there, but takes nothing. */
  check(key: string, cost = 1): void {
    const waitMs = this.waitMs(key, cost, this.now());
    if (waitMs > 0) throw rateLimited(waitMs);
  }

  /** Like take, but answers whether the tokens were there instead of throwing. */
  tryTake(key: string, cost = 1): boolean {
    return this.attempt(key, cost) === 0;
  }

  /**
   * Takes the tokens and returns 0, or takes nothing and returns the milliseconds to wait. One
   * lookup, and an existing bucket is updated in place (every send passes here twice; a Map keeps
   * a key's place when its value changes, so `prune`'s oldest-first order is the same).
   */
  private attempt(key: string, cost: number): number {
    const now = this.now();
    const bucket = this.buckets.get(key);
    const tokens = this.tokens(bucket, now);
    if (tokens < cost) return this.waitFor(tokens, cost);
    if (bucket) {
      bucket.tokens = tokens - cost;
      bucket.updatedMs = now;
      return 0;
    }
    if (this.buckets.size >= this.maxKeys) this.prune(now);
    this.buckets.set(key, { tokens: tokens - cost, updatedMs: now });
    return 0;
  }

  private tokens(bucket: { tokens: number; updatedMs: number } | undefined, now: number): number {
    const refillMs = this.limit.refillSeconds * 1000;
    return bucket
      ? Math.min(this.limit.burst, bucket.tokens + (now - bucket.updatedMs) / refillMs)
      : this.limit.burst;
  }

  /** 0 when `cost` tokens are there, else the milliseconds until they are. */
  private waitMs(key: string, cost: number, now: number): number {
    const tokens = this.tokens(this.buckets.get(key), now);
    return tokens >= cost ? 0 : this.waitFor(tokens, cost);
  }

  /** The milliseconds until `cost` tokens are there, from `tokens` now (at least 1). */
  private waitFor(tokens: number, cost: number): number {
    return Math.max(1, (cost - tokens) * this.limit.refillSeconds * 1000);
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
