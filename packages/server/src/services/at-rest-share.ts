import {
  createCipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import { AT_REST_SHARE_INFO, AT_REST_SHARE_VERSION, EC_PUBLIC_KEY_BYTES } from '@privcomm/wire';
import { RelayError } from '../errors.ts';

/**
 * Seals each share of a multi-recipient upload before it is stored (SEALED_SENDER_V2_AT_REST:
 * layout in @privcomm/wire and docs/protocol.md). libsignal's sealed sender v2 shares of one
 * upload all end in the same ephemeral key and ciphertext; sealed again here, each to its
 * account's identity key under a fresh ephemeral key, the stored envelopes have no bytes in
 * common, so a copy of the database cannot group them by content. The relay keeps nothing that
 * opens them: only the recipient's identity private key does (the engines, in `decrypt`).
 *
 * node:crypto only: the relay ships as one bundle and cannot load libsignal's native addon.
 */

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
/** libsignal's serialized Curve25519 public key: this type byte, then the 32-byte X25519 key. */
const DJB_KEY_TYPE = 0x05;

const x25519PublicKey = (raw: Uint8Array): KeyObject =>
  createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') },
    format: 'jwk',
  });

/** An X25519 public key in SPKI DER: this much framing, then the 32 bytes. */
const X25519_SPKI_PREFIX_BYTES = 12;

/**
 * The ephemeral public key's 32 bytes, read from its DER export, not its JWK: in Node 20 a key
 * pair from generateKeyPairSync can deadlock the process when exported as JWK. The JWK export
 * holds the key's mutex while it allocates; a garbage collection may then destroy the generation
 * job, whose destructor waits for that same mutex (seen here with gdb: the main thread in
 * ~KeyGenJob under ExportJWKEdKey, for good). In loops of 200,000 generate-and-export, JWK hung 2
 * runs of 8 and 1 of 3; DER, 0 of 8. For the relay, one multi-recipient upload would have frozen
 * every socket.
 */
const rawPublicKey = (publicKey: KeyObject): Buffer =>
  publicKey.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX_BYTES);

const unusableKey = (accountId: string): RelayError =>
  new RelayError(
    'VALIDATION_FAILED',
    `account ${accountId} has an identity key that no share can be sealed to`,
  );

/**
 * A sealer for the shares of one account, whose identity key is `identityKey` as published (33
 * bytes, 0x05 first). Each call uses a fresh ephemeral key: a shared one would tie the shares
 * together again. VALIDATION_FAILED for a key no share can be sealed to (not a Curve25519 key, or
 * one of small order, which no libsignal identity is: no genuine client has a session with it).
 */
export const atRestSealer = (
  accountId: string,
  identityKey: Uint8Array,
): ((share: Uint8Array) => Buffer) => {
  if (identityKey.length !== EC_PUBLIC_KEY_BYTES || identityKey[0] !== DJB_KEY_TYPE) {
    throw unusableKey(accountId);
  }
  const recipient = x25519PublicKey(identityKey.subarray(1));
  return (share) => {
    const ephemeral = generateKeyPairSync('x25519');
    const publicBytes = rawPublicKey(ephemeral.publicKey);
    let secret: Buffer;
    try {
      secret = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient });
    } catch {
      // OpenSSL refuses an all-zero shared secret: the key is of small order.
      throw unusableKey(accountId);
    }
    const keyAndNonce = Buffer.from(
      hkdfSync(
        'sha256',
        secret,
        Buffer.concat([publicBytes, identityKey]),
        AT_REST_SHARE_INFO,
        KEY_BYTES + NONCE_BYTES,
      ),
    );
    const cipher = createCipheriv(
      'aes-256-gcm',
      keyAndNonce.subarray(0, KEY_BYTES),
      keyAndNonce.subarray(KEY_BYTES),
    );
    return Buffer.concat([
      Buffer.of(AT_REST_SHARE_VERSION),
      publicBytes,
      cipher.update(share),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
  };
};
