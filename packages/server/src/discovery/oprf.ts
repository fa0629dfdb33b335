import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { RelayError } from '../errors.ts';
import { oprfSecretKey, type DiscoveryKeys } from './keys.ts';

/** Evaluations between two yields to the event loop: about 25 ms of CPU at ≈3 ms each. */
const EVALUATIONS_PER_TURN = 8;

interface ActiveKey {
  readonly version: number;
  readonly secret: Uint8Array;
  /** Absent for the current key. */
  readonly until?: Date;
}

/**
 * The relay's side of the OPRF: evaluates blinded elements with every active key. It sees only
 * blinded elements (uniformly random group elements to anyone without the client's blind), so
 * it learns nothing about the numbers; nothing of a request is stored or logged.
 */
export class DiscoveryOprf {
  private readonly keys: readonly ActiveKey[];

  constructor(
    keys: DiscoveryKeys,
    private readonly now: () => number = Date.now,
  ) {
    this.keys = [
      { version: keys.current.version, secret: oprfSecretKey(keys.current) },
      ...(keys.previous
        ? [
            {
              version: keys.previous.version,
              secret: oprfSecretKey(keys.previous),
              until: keys.previous.until,
            },
          ]
        : []),
    ];
  }

  get currentVersion(): number {
    return (this.keys[0] as ActiveKey).version;
  }

  /** The versions whose tokens match: the current, and the previous during its grace period. */
  activeVersions(): number[] {
    const now = this.now();
    return this.keys
      .filter((key) => key.until === undefined || key.until.getTime() > now)
      .map((key) => key.version);
  }

  /**
   * Each blinded element evaluated with each active key, current key first. Yields to the event
   * loop every few evaluations: a full batch is a few hundred milliseconds of CPU, which must not
   * hold up message delivery on the same instance.
   */
  async evaluate(
    blinded: readonly Uint8Array[],
  ): Promise<{ keyVersion: number; evaluated: Uint8Array[] }[]> {
    const versions = new Set(this.activeVersions());
    const results = [];
    let sinceYield = 0;
    for (const key of this.keys.filter((candidate) => versions.has(candidate.version))) {
      const evaluated: Uint8Array[] = [];
      for (const [index, element] of blinded.entries()) {
        if (sinceYield === EVALUATIONS_PER_TURN) {
          sinceYield = 0;
          await yieldToEventLoop();
        }
        sinceYield += 1;
        try {
          evaluated.push(ristretto255_oprf.oprf.blindEvaluate(key.secret, element));
        } catch {
          throw new RelayError(
            'VALIDATION_FAILED',
            `blinded[${index}] is not a ristretto255 element other than the identity`,
          );
        }
      }
      results.push({ keyVersion: key.version, evaluated });
    }
    return results;
  }
}
