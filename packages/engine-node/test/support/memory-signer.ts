import { generateKeyPairSync, sign } from 'node:crypto';
import type { AuthSigner } from '@privcomm/client';

/** A device authentication key kept in memory (the CLI keeps it in a 0600 file). */
export const memorySigner = (): AuthSigner => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return {
    publicKey: async () => new Uint8Array(raw),
    sign: async (message) => new Uint8Array(sign(null, message, privateKey)),
  };
};
