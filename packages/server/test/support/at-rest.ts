import { atRestSealer } from '../../src/services/at-rest-share.ts';

/**
 * The relay's own at-rest seal (src/services/at-rest-share.ts), for tests elsewhere: the engine
 * contract seals shares with it exactly as the relay does before it stores them.
 */
export const sealShareAtRest = (share: Uint8Array, identityKey: Uint8Array): Uint8Array =>
  new Uint8Array(atRestSealer('a test account', identityKey)(share));

/**
 * Whether `a` and `b` have `length` bytes in a row in common: what a copy of the database could
 * group stored envelopes by (32, a key's length, is the tests' measure).
 */
export const runInCommon = (a: Uint8Array, b: Uint8Array, length: number): boolean => {
  const runs = new Set<string>();
  for (let i = 0; i + length <= a.length; i += 1) {
    runs.add(Buffer.from(a.subarray(i, i + length)).toString('hex'));
  }
  for (let i = 0; i + length <= b.length; i += 1) {
    if (runs.has(Buffer.from(b.subarray(i, i + length)).toString('hex'))) return true;
  }
  return false;
};
