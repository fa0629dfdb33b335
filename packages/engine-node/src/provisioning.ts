import { randomBytes } from 'node:crypto';
import { Aes256GcmSiv, hkdf, PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import { EngineError } from '@privcomm/client';
import { own } from './store.ts';

/**
 * The provisioning message: how a primary device hands its identity key pair (and a payload
 * such as a link token) to a new device, through a relay that must not read it. Every engine
 * implements exactly this format, so that any primary can link any new device:
 *
 *   message = 0x01 || E_pub (33) || nonce (12) || AES-256-GCM-SIV(key, nonce, aad, body)
 *   key     = HKDF-SHA256(ikm = X25519(E_priv, R_pub), salt = none,
 *                         info = "privcomm-provisioning-v1" || E_pub || R_pub, 32 bytes)
 *   aad     = 0x01 || E_pub
 *   body    = uint16-be(length of IKP) || IKP || payload
 *
 * where R is the new device's provisioning key pair (createProvisioningKey), E a fresh
 * ephemeral key pair, IKP the libsignal serialisation of the identity key pair, and all public
 * keys are libsignal-serialised (type byte + 32 bytes). GCM-SIV authenticates everything: a
 * wrong key or any modified byte fails to decrypt.
 */

export const PROVISIONING_VERSION = 0x01;
const INFO = new TextEncoder().encode('privcomm-provisioning-v1');
const PUBLIC_KEY_BYTES = 33;
const NONCE_BYTES = 12;
const HEADER_BYTES = 1 + PUBLIC_KEY_BYTES + NONCE_BYTES;

const concat = (...parts: Uint8Array[]): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(parts.reduce((length, part) => length + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
};

const cipherFor = (
  agreement: Uint8Array,
  ephemeralPublic: Uint8Array,
  recipientPublic: Uint8Array,
): Aes256GcmSiv =>
  Aes256GcmSiv.new(hkdf(32, own(agreement), concat(INFO, ephemeralPublic, recipientPublic), null));

const invalid = (): EngineError =>
  new EngineError('INVALID_PROVISIONING', 'the provisioning message cannot be opened');

export const sealProvisioningMessage = (
  recipientKey: Uint8Array,
  identityKeyPair: Uint8Array,
  payload: Uint8Array,
): Uint8Array => {
  let recipient: PublicKey;
  try {
    recipient = PublicKey.deserialize(own(recipientKey));
  } catch {
    throw new EngineError('INVALID_PROVISIONING', 'the provisioning key is not a public key');
  }
  const ephemeral = PrivateKey.generate();
  const ephemeralPublic = ephemeral.getPublicKey().serialize();
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  const header = concat(Uint8Array.of(PROVISIONING_VERSION), ephemeralPublic);
  const length = Uint8Array.of(identityKeyPair.length >> 8, identityKeyPair.length & 0xff);
  const body = concat(length, identityKeyPair, payload);
  const cipher = cipherFor(ephemeral.agree(recipient), ephemeralPublic, recipient.serialize());
  return concat(header, nonce, cipher.encrypt(body, nonce, header));
};

/** Returns the identity key pair (serialised) and the payload, or throws INVALID_PROVISIONING. */
export const openProvisioningMessage = (
  recipient: PrivateKey,
  message: Uint8Array,
): { identityKeyPair: Uint8Array; payload: Uint8Array } => {
  if (message.length < HEADER_BYTES + 16 || message[0] !== PROVISIONING_VERSION) throw invalid();
  const header = own(message.subarray(0, 1 + PUBLIC_KEY_BYTES));
  const nonce = own(message.subarray(1 + PUBLIC_KEY_BYTES, HEADER_BYTES));
  let body: Uint8Array;
  try {
    const ephemeralPublic = PublicKey.deserialize(own(header.subarray(1)));
    const cipher = cipherFor(
      recipient.agree(ephemeralPublic),
      ephemeralPublic.serialize(),
      recipient.getPublicKey().serialize(),
    );
    body = cipher.decrypt(own(message.subarray(HEADER_BYTES)), nonce, header);
  } catch {
    throw invalid();
  }
  const length = ((body[0] ?? 0) << 8) | (body[1] ?? 0);
  if (body.length < 2 + length) throw invalid();
  return {
    identityKeyPair: body.subarray(2, 2 + length),
    payload: body.subarray(2 + length),
  };
};
