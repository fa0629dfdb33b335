package org.privcomm.engine.jvm

import org.privcomm.engine.SecretSealer
import java.security.SecureRandom
import javax.crypto.Cipher
import javax.crypto.spec.GCMParameterSpec
import javax.crypto.spec.SecretKeySpec

/**
 * FOR TESTS ONLY. AES-256-GCM under a key that lives in this JVM's memory: it exercises the
 * sealing of private records exactly as the Android Keystore sealer does (same format), but it
 * protects nothing, since the key is an ordinary byte array. A phone uses KeystoreSecretSealer
 * (apps/mobile/modules/privcomm-engine), whose key never leaves the Keystore.
 *
 * Format: 0x01 || nonce (12) || AES-GCM(ciphertext || tag (16)), with `context` as additional data.
 */
class TestOnlySecretSealer(private val key: ByteArray = ByteArray(32).also(SecureRandom()::nextBytes)) : SecretSealer {
  private val random = SecureRandom()

  override fun seal(plaintext: ByteArray, context: String): ByteArray {
    val nonce = ByteArray(12).also(random::nextBytes)
    val cipher = Cipher.getInstance("AES/GCM/NoPadding")
    cipher.init(Cipher.ENCRYPT_MODE, SecretKeySpec(key, "AES"), GCMParameterSpec(128, nonce))
    cipher.updateAAD(context.toByteArray(Charsets.UTF_8))
    return byteArrayOf(1) + nonce + cipher.doFinal(plaintext)
  }

  override fun open(sealed: ByteArray, context: String): ByteArray {
    require(sealed.size >= 1 + 12 + 16 && sealed[0] == 1.toByte()) { "not a sealed record" }
    val cipher = Cipher.getInstance("AES/GCM/NoPadding")
    cipher.init(Cipher.DECRYPT_MODE, SecretKeySpec(key, "AES"), GCMParameterSpec(128, sealed, 1, 12))
    cipher.updateAAD(context.toByteArray(Charsets.UTF_8))
    return cipher.doFinal(sealed, 13, sealed.size - 13)
  }
}
