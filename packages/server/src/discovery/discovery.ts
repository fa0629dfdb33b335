import type { DiscoveryConfig } from '../config.ts';
import type { Db } from '../db/database.ts';
import { RateLimiter } from '../services/rate-limiter.ts';
import { DiscoveryOprf } from './oprf.ts';
import { createDiscoveryTokensRepository, type DiscoveryTokensRepository } from './tokens.ts';

/** Everything the discovery routes use, built once per relay instance. */
export interface Discovery {
  readonly oprf: DiscoveryOprf;
  readonly tokens: DiscoveryTokensRepository;
  readonly limiters: {
    /** Blinded elements evaluated, per account. */
    readonly evaluate: RateLimiter;
    /** Tokens looked up, per account. */
    readonly lookup: RateLimiter;
    /** Elements and tokens together, per client address. */
    readonly address: RateLimiter;
  };
  /** Drops full buckets (called with the relay's other limiters). */
  prune(): void;
}

export const createDiscovery = (config: DiscoveryConfig, db: Db): Discovery => {
  const limiters = {
    evaluate: new RateLimiter(config.rateLimits.evaluate),
    lookup: new RateLimiter(config.rateLimits.lookup),
    address: new RateLimiter(config.rateLimits.address),
  };
  return {
    oprf: new DiscoveryOprf(config.keys),
    tokens: createDiscoveryTokensRepository(db),
    limiters,
    prune: () => {
      for (const limiter of Object.values(limiters)) limiter.prune();
    },
  };
};
