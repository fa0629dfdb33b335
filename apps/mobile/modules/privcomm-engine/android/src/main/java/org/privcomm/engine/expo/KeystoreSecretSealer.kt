package org.privcomm.engine.expo

import android.os.Build
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import android.security.keystore.StrongBoxUnavailableException
import org.privcomm.engine.SecretSealer
import java.security.KeyStore
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/**
 * Seals the engine store's private records with AES-256-GCM under a key that lives in the Android
 * Keystore: generated there, non-exportable (the Keystore never hands out its bytes), in
 * StrongBox when the phone has one. Neither JavaScript nor a copy of the SQLite file ever sees
 * it. It needs no user authentication, because the engine decrypts messages in the background;
 * the device's own lock screen and file encryption guard the app as a whole.
 *
 * Format (the same as the JVM tests' TestOnlySecretSealer): 0x01 || IV (12) || ciphertext+tag,
 * with the record's context as additional data, so that a record cannot move to another row.
 */
class KeystoreSecretSealer(private val alias: String = "privcomm-engine-store") : SecretSealer {
  private val key: SecretKey by lazy { existingKey() ?: newKey() }

  private fun keyStore(): KeyStore = KeyStore.getInstance(KEYSTORE).apply { load(null) }

  private fun existingKey(): SecretKey? = (keyStore().getEntry(alias, null) as? KeyStore.SecretKeyEntry)?.secretKey

  private fun newKey(): SecretKey {
    fun generate(strongBox: Boolean): SecretKey {
      val spec = KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
        .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
        .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
        .setKeySize(256)
        .setRandomizedEncryptionRequired(true)
        .setUserAuthenticationRequired(false)
        .apply { if (strongBox && Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) setIsStrongBoxBacked(true) }
        .build()
      return KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, KEYSTORE).run {
        init(spec)
        generateKey()
      }
    }
    if (Build.VERSION.SDK_INT < Build.VERSION_CODES.P) return generate(strongBox = false)
    return try {
      generate(strongBox = true)
    } catch (error: StrongBoxUnavailableException) {
      // No StrongBox on this phone: the key stays in the TEE-backed Keystore.
      generate(strongBox = false)
    }
  }

  override fun seal(plaintext: ByteArray, context: String): ByteArray {
    val cipher = Cipher.getInstance(TRANSFORMATION)
    // The Keystore chooses the IV (randomized encryption is required of this key).
    cipher.init(Cipher.ENCRYPT_MODE, key)
    cipher.updateAAD(context.toByteArray(Charsets.UTF_8))
    val iv = cipher.iv
    check(iv.size == IV_BYTES) { "unexpected GCM IV length ${iv.size}" }
    return byteArrayOf(VERSION) + iv + cipher.doFinal(plaintext)
  }

  override fun open(sealed: ByteArray, context: String): ByteArray {
    require(sealed.size >= 1 + IV_BYTES + 16 && sealed[0] == VERSION) { "not a sealed record" }
    val cipher = Cipher.getInstance(TRANSFORMATION)
    cipher.init(Cipher.DECRYPT_MODE, key, GCMParameterSpec(128, sealed, 1, IV_BYTES))
    cipher.updateAAD(context.toByteArray(Charsets.UTF_8))
    return cipher.doFinal(sealed, 1 + IV_BYTES, sealed.size - 1 - IV_BYTES)
  }

  private companion object {
    const val KEYSTORE = "AndroidKeyStore"
    const val TRANSFORMATION = "AES/GCM/NoPadding"
    const val IV_BYTES = 12
    const val VERSION: Byte = 1
  }
}
