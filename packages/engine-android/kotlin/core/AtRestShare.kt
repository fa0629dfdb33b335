package org.privcomm.engine

import org.signal.libsignal.protocol.IdentityKeyPair
import org.signal.libsignal.protocol.ecc.ECPublicKey
import org.signal.libsignal.protocol.kdf.HKDF
import javax.crypto.Cipher
import javax.crypto.spec.GCMParameterSpec
import javax.crypto.spec.SecretKeySpec

/**
 * Opens a share that the relay sealed at rest to this account's identity key
 * (SEALED_SENDER_V2_AT_REST), as engine-node/src/at-rest-share.ts does; the relay's side is
 * packages/server/src/services/at-rest-share.ts, the layout is in docs/protocol.md:
 *
 *   content    = 0x01 || E (32-byte X25519 public key) || AES-256-GCM(share) (ciphertext || 16-byte tag)
 *   key, nonce = HKDF-SHA256(ikm = X25519(identity, E), salt = E || identity public key (33 bytes),
 *                            info = "privcomm at-rest share v1"), 32 + 12 bytes
 *
 * What is inside is the device's sealed sender v2 share, which `decrypt` then opens as it opens
 * SEALED_SENDER_V2. Every device of an account holds the same identity key pair.
 */
object AtRestShare {
  private const val VERSION: Byte = 0x01
  private const val EPHEMERAL_KEY_BYTES = 32
  private const val TAG_BYTES = 16
  private const val KEY_BYTES = 32
  private const val NONCE_BYTES = 12
  /** libsignal's serialized Curve25519 public key: this type byte, then the 32-byte X25519 key. */
  private const val DJB_KEY_TYPE: Byte = 0x05
  private val INFO = "privcomm at-rest share v1".toByteArray(Charsets.UTF_8)

  private fun unopenable(reason: String) = invalidMessage("the relay's seal on the share cannot be opened: $reason")

  /** The share inside `sealed`, or INVALID_MESSAGE when it is not sealed to `identity`. */
  fun open(sealed: ByteArray, identity: IdentityKeyPair): ByteArray {
    if (sealed.size <= 1 + EPHEMERAL_KEY_BYTES + TAG_BYTES) throw unopenable("it is too short")
    if (sealed[0] != VERSION) throw unopenable("unknown version ${sealed[0]}")
    val ephemeral = sealed.copyOfRange(1, 1 + EPHEMERAL_KEY_BYTES)
    val agreement = identity.privateKey.calculateAgreement(ECPublicKey(byteArrayOf(DJB_KEY_TYPE) + ephemeral))
    val keyAndNonce =
      HKDF.deriveSecrets(agreement, ephemeral + identity.publicKey.serialize(), INFO, KEY_BYTES + NONCE_BYTES)
    val cipher = Cipher.getInstance("AES/GCM/NoPadding")
    cipher.init(
      Cipher.DECRYPT_MODE,
      SecretKeySpec(keyAndNonce, 0, KEY_BYTES, "AES"),
      GCMParameterSpec(TAG_BYTES * 8, keyAndNonce, KEY_BYTES, NONCE_BYTES),
    )
    return try {
      cipher.doFinal(sealed, 1 + EPHEMERAL_KEY_BYTES, sealed.size - 1 - EPHEMERAL_KEY_BYTES)
    } catch (error: javax.crypto.AEADBadTagException) {
      throw unopenable("it was sealed to another identity, or changed")
    }
  }
}
