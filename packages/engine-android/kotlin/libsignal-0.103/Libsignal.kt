package org.privcomm.engine

import org.signal.libsignal.metadata.SealedSessionCipher
import org.signal.libsignal.metadata.protocol.UnidentifiedSenderMessageContent
import org.signal.libsignal.protocol.ReusedBaseKeyException
import org.signal.libsignal.protocol.SessionBuilder
import org.signal.libsignal.protocol.SessionCipher
import org.signal.libsignal.protocol.SignalProtocolAddress
import org.signal.libsignal.protocol.ecc.ECPublicKey
import org.signal.libsignal.protocol.message.CiphertextMessage
import org.signal.libsignal.protocol.message.PreKeySignalMessage
import org.signal.libsignal.protocol.message.SignalMessage
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.PreKeyBundle
import org.signal.libsignal.protocol.state.SessionRecord
import org.signal.libsignal.protocol.state.SignalProtocolStore
import java.lang.reflect.InvocationTargetException
import java.util.UUID

/*
 * What differs between libsignal versions, for org.signal:libsignal-android 0.103.x, the version
 * of the Node package: what the Expo module (apps/mobile/modules/privcomm-engine) compiles.
 *
 * NOT COMPILED HERE: no Android SDK and no access to Signal's Maven repository on this machine.
 * Written against libsignal's Java sources at v0.101.0 (the newest at hand), whose API already has
 * the changes from 0.80 that matter here: SessionBuilder and SessionCipher take the local address,
 * the post-quantum ratchet is no longer optional, markKyberPreKeyUsed names the signed prekey and
 * base key, and the native decrypt-to-USMC call takes a bridged identity store.
 */

/** The libsignal stores of one operation (see OperationStoreBase). */
class OperationStore(store: ProtocolStore, afterRollback: (() -> Unit) -> Unit) :
  OperationStoreBase(store, afterRollback), SignalProtocolStore {
  override fun loadKyberPreKey(kyberPreKeyId: Int): KyberPreKeyRecord = kyberPreKey(kyberPreKeyId)

  override fun loadKyberPreKeys(): List<KyberPreKeyRecord> = store.kyberPreKeys()

  /** Only the engine generates Kyber prekeys (ProtocolStore.saveKyberPreKey). */
  override fun storeKyberPreKey(kyberPreKeyId: Int, record: KyberPreKeyRecord) =
    store.saveKyberPreKey(kyberPreKeyId, record, false)

  override fun containsKyberPreKey(kyberPreKeyId: Int): Boolean = store.hasKyberPreKey(kyberPreKeyId)

  override fun markKyberPreKeyUsed(kyberPreKeyId: Int, signedPreKeyId: Int, baseKey: ECPublicKey) {
    try {
      recordKyberPreKeyUse(kyberPreKeyId, signedPreKeyId, baseKey.serialize())
    } catch (error: EngineException) {
      // The engine's DUPLICATE_MESSAGE is kept by OperationStoreBase; libsignal gets its own kind.
      if (error.code == EngineErrorCode.DUPLICATE_MESSAGE) throw ReusedBaseKeyException(error.message)
      throw error
    }
  }
}

object Libsignal {
  const val VERSION = "0.103"

  fun processBundle(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    bundle: PreKeyBundle,
  ) {
    SessionBuilder(store, remote, local).process(bundle)
  }

  fun encrypt(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    plaintext: ByteArray,
  ): CiphertextMessage = SessionCipher(store, local, remote).encrypt(plaintext)

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
  ): ByteArray = SessionCipher(store, local, remote).decrypt(message)

  fun decryptWhisper(
    store: OperationStore,
    local: SignalProtocolAddress,
    remote: SignalProtocolAddress,
    message: SignalMessage,
  ): ByteArray = SessionCipher(store, local, remote).decrypt(message)

  /**
   * Opens the sealed-sender layers without checking the certificate's trust root (certificates
   * are self-issued: see SignalEngineCore). The Java API offers this only inside
   * SealedSessionCipher.decrypt, which then checks a trust root; this is the native call it
   * makes, reached by reflection because Kotlin marks libsignal's Native object internal.
   */
  fun decryptToUsmc(ciphertext: ByteArray, store: OperationStore): UnidentifiedSenderMessageContent {
    val handle =
      try {
        decryptToUsmcMethod.invoke(null, ciphertext, SessionCipher._bridge(store)) as Long
      } catch (error: InvocationTargetException) {
        throw error.targetException
      }
    return UnidentifiedSenderMessageContent(handle)
  }

  private val decryptToUsmcMethod =
    Class.forName("org.signal.libsignal.internal.Native").getMethod(
      "SealedSessionCipher_DecryptToUsmc",
      ByteArray::class.java,
      Class.forName("org.signal.libsignal.protocol.state.internal.IdentityKeyStore"),
    )
}
