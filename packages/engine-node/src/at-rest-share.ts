import { createDecipheriv } from 'node:crypto';
import { hkdf, PublicKey, type IdentityKeyPair } from '@signalapp/libsignal-client';
import { EngineError } from '@privcomm/client';
import {
  AT_REST_SHARE_INFO,
  AT_REST_SHARE_OVERHEAD_BYTES,
  AT_REST_SHARE_VERSION,
} from '@privcomm/wire';
import { own } from './store.ts';

/**
 * Opens a share that the relay sealed at rest to this account's identity key
 * (SEALED_SENDER_V2_AT_REST; the relay's side is packages/server/src/services/at-rest-share.ts,
 * the layout is in @privcomm/wire and docs/protocol.md): what is inside is the device's sealed
 * sender v2 share, which `decrypt` then opens as it opens SEALED_SENDER_V2. Every device of an
 * account holds the same identity key pair, so each of them opens its own share.
 */

const EPHEMERAL_KEY_BYTES = 32;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
/** libsignal's serialized Curve25519 public key: this type byte, then the 32-byte X25519 key. */
const DJB_KEY_TYPE = 0x05;
const INFO = new TextEncoder().encode(AT_REST_SHARE_INFO);

const unopenable = (reason: string): EngineError =>
  new EngineError('INVALID_MESSAGE', `the relay's seal on the share cannot be opened: ${reason}`);

/** The share inside `sealed`, or INVALID_MESSAGE when it is not sealed to `identity`. */
export const openShareAtRest = (sealed: Uint8Array, identity: IdentityKeyPair): Uint8Array => {
  if (sealed.length <= AT_REST_SHARE_OVERHEAD_BYTES) throw unopenable('it is too short');
  if (sealed[0] !== AT_REST_SHARE_VERSION) throw unopenable(`unknown version ${sealed[0]}`);
  const ephemeral = sealed.subarray(1, 1 + EPHEMERAL_KEY_BYTES);
  const ciphertext = sealed.subarray(1 + EPHEMERAL_KEY_BYTES, sealed.length - TAG_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const ephemeralKey = PublicKey.deserialize(own(Uint8Array.of(DJB_KEY_TYPE, ...ephemeral)));
  const salt = new Uint8Array([...ephemeral, ...identity.publicKey.serialize()]);
  const keyAndNonce = hkdf(
    KEY_BYTES + NONCE_BYTES,
    identity.privateKey.agree(ephemeralKey),
    INFO,
    salt,
  );
  const decipher = createDecipheriv(
    'aes-256-gcm',
    keyAndNonce.subarray(0, KEY_BYTES),
    keyAndNonce.subarray(KEY_BYTES),
  );
  decipher.setAuthTag(tag);
  try {
    return new Uint8Array(Buffer.concat([decipher.update(ciphertext), decipher.final()]));
  } catch {
    throw unopenable('it was sealed to another identity, or changed');
  }
};
