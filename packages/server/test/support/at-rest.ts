import { atRestSealer } from '../../src/services/at-rest-share.ts';

/**
 * The relay's own at-rest seal (src/services/at-rest-share.ts), for tests elsewhere: the engine
 * contract seals shares with it exactly as the relay does before it stores them.
 */
export const sealShareAtRest = (share: Uint8Array, identityKey: Uint8Array): Uint8Array =>
  new Uint8Array(atRestSealer('a test account', identityKey)(share));
