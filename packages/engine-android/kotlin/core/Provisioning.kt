package org.privcomm.engine

import org.signal.libsignal.crypto.Aes256GcmSiv
import org.signal.libsignal.protocol.ecc.ECPrivateKey
import org.signal.libsignal.protocol.ecc.ECPublicKey
import org.signal.libsignal.protocol.kdf.HKDF
import java.security.SecureRandom

/**
 * The provisioning message, byte for byte the format of engine-node/src/provisioning.ts, so
 * that any primary can link any new device:
 *
 *   message = 0x01 || E_pub (33) || nonce (12) || AES-256-GCM-SIV(key, nonce, aad, body)
 *   key     = HKDF-SHA256(ikm = X25519(E_priv, R_pub), salt = none,
 *                         info = "privcomm-provisioning-v1" || E_pub || R_pub, 32 bytes)
 *   aad     = 0x01 || E_pub
 *   body    = uint16-be(length of IKP) || IKP || payload
 */
object Provisioning {
  const val VERSION: Byte = 0x01
  private val INFO = "privcomm-provisioning-v1".toByteArray(Charsets.UTF_8)
  private const val PUBLIC_KEY_BYTES = 33
  private const val NONCE_BYTES = 12
  private const val HEADER_BYTES = 1 + PUBLIC_KEY_BYTES + NONCE_BYTES
  private val random = SecureRandom()

  private fun cipherFor(agreement: ByteArray, ephemeralPublic: ByteArray, recipientPublic: ByteArray) =
    Aes256GcmSiv(HKDF.deriveSecrets(agreement, INFO + ephemeralPublic + recipientPublic, 32))

  private fun invalid() =
    EngineException(EngineErrorCode.INVALID_PROVISIONING, "the provisioning message cannot be opened")

  fun seal(recipientKey: ByteArray, identityKeyPair: ByteArray, payload: ByteArray): ByteArray {
    val recipient =
      try {
        ECPublicKey(recipientKey)
      } catch (error: Exception) {
        throw EngineException(EngineErrorCode.INVALID_PROVISIONING, "the provisioning key is not a public key")
      }
    val ephemeral = ECPrivateKey.generate()
    val ephemeralPublic = ephemeral.getPublicKey().serialize()
    val nonce = ByteArray(NONCE_BYTES).also(random::nextBytes)
    val header = byteArrayOf(VERSION) + ephemeralPublic
    val length = byteArrayOf((identityKeyPair.size shr 8).toByte(), (identityKeyPair.size and 0xff).toByte())
    val cipher = cipherFor(ephemeral.calculateAgreement(recipient), ephemeralPublic, recipient.serialize())
    return header + nonce + cipher.encrypt(length + identityKeyPair + payload, nonce, header)
  }

  /** Returns the identity key pair (serialised) and the payload, or throws INVALID_PROVISIONING. */
  fun open(recipient: ECPrivateKey, message: ByteArray): Pair<ByteArray, ByteArray> {
    if (message.size < HEADER_BYTES + 16 || message[0] != VERSION) throw invalid()
    val header = message.copyOfRange(0, 1 + PUBLIC_KEY_BYTES)
    val nonce = message.copyOfRange(1 + PUBLIC_KEY_BYTES, HEADER_BYTES)
    val body =
      try {
        val ephemeralPublic = ECPublicKey(header.copyOfRange(1, header.size))
        val cipher = cipherFor(
          recipient.calculateAgreement(ephemeralPublic),
          ephemeralPublic.serialize(),
          recipient.getPublicKey().serialize(),
        )
        cipher.decrypt(message.copyOfRange(HEADER_BYTES, message.size), nonce, header)
      } catch (error: Exception) {
        throw invalid()
      }
    if (body.size < 2) throw invalid()
    val length = ((body[0].toInt() and 0xff) shl 8) or (body[1].toInt() and 0xff)
    if (body.size < 2 + length) throw invalid()
    return body.copyOfRange(2, 2 + length) to body.copyOfRange(2 + length, body.size)
  }
}
