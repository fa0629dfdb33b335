import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AccountId, DeviceId } from '@privcomm/wire';
import { CHALLENGE_LIFETIME_SECONDS } from './tokens.ts';

/**
 * Stateless login challenges. The 32-byte nonce a device signs is
 *
 *   expiry (4 bytes, unix seconds, big-endian) || random (12 bytes) || tag (16 bytes)
 *
 * where tag = HMAC-SHA256(key, "privcomm-challenge-v1" || account || device || expiry || random),
 * truncated to 16 bytes, and the key is derived from JWT_SECRET (so every instance shares it and it
 * lives only in memory and the secrets). Issuing one writes nothing anywhere; the relay can tell
 * later that it issued this nonce for this device and that it has not expired. Single use is the
 * caller's job (the used_challenges table), checked only once the signature is right.
 */

export { CHALLENGE_LIFETIME_SECONDS };
const EXPIRY_BYTES = 4;
const RANDOM_BYTES = 12;
const TAG_BYTES = 16;
export const NONCE_BYTES = EXPIRY_BYTES + RANDOM_BYTES + TAG_BYTES;

/** The challenge key for a JWT secret: a separate key, so that neither use can stand in for the other. */
export const challengeKey = (jwtSecret: Uint8Array): Buffer =>
  Buffer.from(hkdfSync('sha256', jwtSecret, Buffer.alloc(0), 'privcomm-auth-challenge-v1', 32));

const tag = (key: Buffer, accountId: string, deviceId: number, head: Buffer): Buffer =>
  createHmac('sha256', key)
    .update(`privcomm-challenge-v1:${accountId}:${deviceId}:`)
    .update(head)
    .digest()
    .subarray(0, TAG_BYTES);

/** A nonce for this device that expires at `expirySeconds` (unix time). */
export const sealChallenge = (
  key: Buffer,
  accountId: AccountId,
  deviceId: DeviceId,
  expirySeconds: number,
): Buffer => {
  const head = Buffer.alloc(EXPIRY_BYTES + RANDOM_BYTES);
  head.writeUInt32BE(expirySeconds, 0);
  randomBytes(RANDOM_BYTES).copy(head, EXPIRY_BYTES);
  return Buffer.concat([head, tag(key, accountId, deviceId, head)]);
};

/**
 * The nonce's expiry (unix seconds) if this relay issued it for exactly this device and it is still
 * valid at `nowSeconds`; otherwise undefined.
 */
export const openChallenge = (
  key: Buffer,
  accountId: AccountId,
  deviceId: DeviceId,
  nonce: Buffer,
  nowSeconds: number,
): number | undefined => {
  if (nonce.length !== NONCE_BYTES) return undefined;
  const head = nonce.subarray(0, EXPIRY_BYTES + RANDOM_BYTES);
  if (!timingSafeEqual(tag(key, accountId, deviceId, head), nonce.subarray(head.length))) {
    return undefined;
  }
  const expiry = head.readUInt32BE(0);
  return expiry > nowSeconds ? expiry : undefined;
};

/**
 * What the used_challenges table keeps of a nonce: its SHA-256, never the nonce itself. With the
 * key, a stored nonce's tag could be tested against every device to learn which one logged in;
 * the hash of a nonce with 96 random bits cannot be.
 */
export const usedNonceHash = (nonce: Buffer): Buffer => createHash('sha256').update(nonce).digest();
