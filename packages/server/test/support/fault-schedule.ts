import { randomInt } from 'node:crypto';

/**
 * Reproducible fault schedules. Every fault test draws which relay dies, when, and which fault
 * comes next from one seeded generator, prints the seed, and takes PRIVCOMM_FAULT_SEED to replay
 * a failing run. (The schedule only; ids, keys and tokens still come from the CSPRNG.)
 */

/** `long` (npm run test:faults) or `short` (CI): sizes differ, criteria do not. */
export const FAULT_SCALE: 'long' | 'short' =
  process.env.PRIVCOMM_FAULT_SCALE === 'long' ? 'long' : 'short';

export const byScale = <T>(short: T, long: T): T => (FAULT_SCALE === 'long' ? long : short);

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export class FaultRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(0, items.length - 1)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
}

/** A line of the suite's output: on stdout, beside vitest's own report. */
export const report = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** The seed for one test: PRIVCOMM_FAULT_SEED when replaying, else a fresh one; printed. */
export const faultRandom = (test: string): FaultRandom => {
  const given = process.env.PRIVCOMM_FAULT_SEED;
  const seed = given === undefined || given === '' ? randomInt(2 ** 31) : Number(given);
  if (!Number.isInteger(seed)) throw new Error('PRIVCOMM_FAULT_SEED must be an integer');
  report(`[faults] ${test}: seed ${seed} (replay with PRIVCOMM_FAULT_SEED=${seed})`);
  return new FaultRandom(seed);
};

export type Figures = Record<string, number | string>;

/** One line per test, the same shape every time, so runs can be compared (docs/reliability.md). */
export const printFigures = (test: string, figures: Figures): void => {
  const text = Object.entries(figures)
    .map(
      ([name, value]) =>
        `${name}=${typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(2) : value}`,
    )
    .join(' ');
  report(`[faults] ${test} [${FAULT_SCALE}]: ${text}`);
};

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

export const MIB = 1024 * 1024;
