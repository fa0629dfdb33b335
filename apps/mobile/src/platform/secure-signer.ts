import { ed25519 } from '@noble/curves/ed25519.js';
import { fromBase64, toBase64, type AuthSigner } from '@privcomm/client';
import type { SecretStore } from './secrets.ts';

/** The secure-store entry holding the device's relay login key (a 32-byte Ed25519 seed). */
export const AUTH_KEY_ENTRY = 'privcomm.auth-key.v1';

/** The stored key is not a 32-byte seed: the secure store was damaged or written by another app. */
export class SecretFormatError extends Error {
  override readonly name = 'SecretFormatError';
}

/**
 * The device's Ed25519 authentication key: it signs the relay's login challenges (it is not the
 * Signal identity, which the engine owns). The seed lives in the secure store; signing happens
 * in JavaScript (@noble/curves), so the seed is in memory while the app runs.
 */
export class SecureStoreSigner implements AuthSigner {
  private constructor(private readonly seed: Uint8Array) {}

  /** Reads the key, or creates and stores one from `randomBytes` when there is none yet. */
  static async loadOrCreate(
    secrets: SecretStore,
    randomBytes: (length: number) => Uint8Array,
  ): Promise<SecureStoreSigner> {
    const stored = await secrets.getItemAsync(AUTH_KEY_ENTRY);
    if (stored !== null) {
      let seed: Uint8Array;
      try {
        seed = fromBase64(stored);
      } catch {
        throw new SecretFormatError('the stored login key is not base64');
      }
      if (seed.length !== 32)
        throw new SecretFormatError(`the stored login key has ${seed.length} bytes, not 32`);
      return new SecureStoreSigner(seed);
    }
    const seed = randomBytes(32);
    await secrets.setItemAsync(AUTH_KEY_ENTRY, toBase64(seed));
    return new SecureStoreSigner(seed);
  }

  async publicKey(): Promise<Uint8Array> {
    return ed25519.getPublicKey(this.seed);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return ed25519.sign(message, this.seed);
  }
}
