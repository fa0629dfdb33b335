import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { DISCOVERY_TOKEN_BYTES } from '@privcomm/wire';
import { utf8Encode } from '../bytes.ts';
import type { E164 } from './phone-number.ts';

/**
 * The client's side of the discovery OPRF (RFC 9497, ristretto255-SHA512, base mode). The input
 * is the E.164 number with a context prefix; the relay sees only `blinded`, a group element that
 * is uniformly random to anyone without `blind`, which never leaves the device.
 */

const INPUT_CONTEXT = 'privcomm discovery v1 ';

export interface BlindedNumber {
  readonly number: E164;
  readonly input: Uint8Array;
  /** The blinding scalar: secret, kept only until the evaluation comes back. */
  readonly blind: Uint8Array;
  /** Sent to the relay. */
  readonly blinded: Uint8Array;
}

/** Random bytes from the platform's CSPRNG (the client's injected randomBytes). */
export type RandomBytes = (length: number) => Uint8Array;

export const blindNumber = (number: E164, randomBytes: RandomBytes): BlindedNumber => {
  const input = utf8Encode(`${INPUT_CONTEXT}${number}`);
  const { blind, blinded } = ristretto255_oprf.oprf.blind(input, (length = 32) =>
    randomBytes(length),
  );
  return { number, input, blind, blinded };
};

/**
 * Unblinds the relay's evaluation and derives the discovery token: the first 32 bytes of the
 * OPRF output. Throws if `evaluated` is not a valid element (a relay answering nonsense).
 */
export const discoveryToken = (blinded: BlindedNumber, evaluated: Uint8Array): Uint8Array =>
  ristretto255_oprf.oprf
    .finalize(blinded.input, blinded.blind, evaluated)
    .slice(0, DISCOVERY_TOKEN_BYTES);
