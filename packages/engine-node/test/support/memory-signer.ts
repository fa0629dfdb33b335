import { generateKeyPairSync, sign } from 'node:crypto';
import type { AuthSigner } from '@privcomm/client';

/** A device authentication key kept in memory (the CLI keeps it in a 0600 file). */
export const memorySigner = (): AuthSigner => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // DER, not JWK: a JWK export of a generated key can deadlock Node 20 (the relay's
  // src/services/at-rest-share.ts says how).
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return {
    publicKey: async () => new Uint8Array(raw),
    sign: async (message) => new Uint8Array(sign(null, message, privateKey)),
  };
};
