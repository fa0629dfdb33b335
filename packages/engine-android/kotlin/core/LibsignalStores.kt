package org.privcomm.engine

import org.signal.libsignal.protocol.IdentityKey
import org.signal.libsignal.protocol.IdentityKeyPair
import org.signal.libsignal.protocol.InvalidKeyIdException
import org.signal.libsignal.protocol.NoSessionException
import org.signal.libsignal.protocol.SignalProtocolAddress
import org.signal.libsignal.protocol.groups.state.SenderKeyRecord
import org.signal.libsignal.protocol.groups.state.SenderKeyStore
import org.signal.libsignal.protocol.state.IdentityKeyStore
import org.signal.libsignal.protocol.state.PreKeyStore
import org.signal.libsignal.protocol.state.SessionStore
import org.signal.libsignal.protocol.state.SignedPreKeyStore
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.PreKeyRecord
import org.signal.libsignal.protocol.state.SessionRecord
import org.signal.libsignal.protocol.state.SignedPreKeyRecord
import java.util.UUID

/**
 * The libsignal store callbacks of one operation, over the ProtocolStore, with the identity
 * policy of the Node engine (engine-node/src/store.ts), trust on first use:
 * - no key stored for the account: trusted, and stored by saveIdentity;
 * - the stored key: trusted, unless the account is verified and a changed key is pending;
 * - another key, account not verified: trusted; saveIdentity replaces the key and sets
 *   `changed`, and drops the sessions with the account's other devices (they were made with
 *   the old identity, which every device of an account shares) and the account's sender keys;
 * - another key, account verified: not trusted, so libsignal refuses the operation; the key is
 *   recorded as pending (after the operation's rollback) until acceptIdentity.
 * Our own account is trusted only with our own identity key (linked devices share it).
 *
 * The Kyber prekey callbacks differ between libsignal versions; they are in the
 * version-specific OperationStore (kotlin/libsignal-<version>/).
 */
abstract class OperationStoreBase(
  protected val store: ProtocolStore,
  /** Work to run after the operation's rollback, in its own transaction. */
  private val afterRollback: (() -> Unit) -> Unit,
) : IdentityKeyStore, SessionStore, PreKeyStore, SignedPreKeyStore, SenderKeyStore {
  /** The identity keys libsignal saved during this operation, by address. */
  val savedIdentities = mutableMapOf<String, IdentityKey>()

  /**
   * The first EngineException a callback threw: the operation rethrows it, whatever libsignal
   * turned it into on its way back.
   */
  var firstFailure: EngineException? = null
    private set

  protected fun <T> guard(work: () -> T): T =
    try {
      work()
    } catch (error: EngineException) {
      if (firstFailure == null) firstFailure = error
      throw error
    }

  // --- IdentityKeyStore ---

  override fun getIdentityKeyPair(): IdentityKeyPair = guard { store.requireIdentityKeyPair() }

  override fun getLocalRegistrationId(): Int =
    guard {
      store.registrationId() ?: throw EngineException(EngineErrorCode.NO_IDENTITY, "this device has no identity yet")
    }

  override fun isTrustedIdentity(
    address: SignalProtocolAddress,
    identityKey: IdentityKey,
    direction: IdentityKeyStore.Direction,
  ): Boolean {
    val accountId = address.name
    if (accountId == store.getMetaText("local_account_id")) {
      return identityKey == store.requireIdentityKeyPair().publicKey
    }
    val row = store.identity(accountId) ?: return true
    val serialized = identityKey.serialize()
    if (!row.verified) return true
    if (row.pendingKey == null && row.identityKey.contentEquals(serialized)) return true
    if (!row.identityKey.contentEquals(serialized)) {
      // Survives the rollback of the refused operation, so that the UI can show the change.
      afterRollback {
        val current = store.identity(accountId)
        if (current != null && current.verified && !current.identityKey.contentEquals(serialized)) {
          store.putIdentity(accountId, current.copy(changed = true, pendingKey = serialized))
        }
      }
    }
    return false
  }

  override fun saveIdentity(address: SignalProtocolAddress, identityKey: IdentityKey): IdentityKeyStore.IdentityChange {
    val accountId = address.name
    val serialized = identityKey.serialize()
    savedIdentities[address.toString()] = identityKey
    val row = store.identity(accountId)
    if (row == null) {
      store.putIdentity(accountId, IdentityRow(serialized, verified = false, changed = false, pendingKey = null))
      return IdentityKeyStore.IdentityChange.NEW_OR_UNCHANGED
    }
    if (row.identityKey.contentEquals(serialized)) return IdentityKeyStore.IdentityChange.NEW_OR_UNCHANGED
    // Only reached for an unverified account: isTrustedIdentity refused the verified case.
    store.putIdentity(accountId, IdentityRow(serialized, verified = false, changed = true, pendingKey = null))
    for (deviceId in store.sessionDeviceIds(accountId)) {
      if (deviceId != address.deviceId) store.deleteSession(accountId, deviceId)
    }
    // Sender keys came over sessions with the old identity: the new one sends its own.
    store.deleteSenderKeys(accountId)
    return IdentityKeyStore.IdentityChange.REPLACED_EXISTING
  }

  override fun getIdentity(address: SignalProtocolAddress): IdentityKey? =
    store.identity(address.name)?.let { IdentityKey(it.identityKey) }

  // --- SessionStore (libsignal's Java stores return a fresh record for "no session") ---

  override fun loadSession(address: SignalProtocolAddress): SessionRecord =
    store.loadSession(address.name, address.deviceId) ?: SessionRecord()

  override fun loadExistingSessions(addresses: List<SignalProtocolAddress>): List<SessionRecord> =
    addresses.map {
      store.loadSession(it.name, it.deviceId) ?: throw NoSessionException(it, "no session with $it")
    }

  override fun getSubDeviceSessions(name: String): List<Int> = store.sessionDeviceIds(name)

  override fun storeSession(address: SignalProtocolAddress, record: SessionRecord) {
    store.saveSession(address.name, address.deviceId, record)
  }

  override fun containsSession(address: SignalProtocolAddress): Boolean =
    store.loadSession(address.name, address.deviceId) != null

  override fun deleteSession(address: SignalProtocolAddress) {
    store.deleteSession(address.name, address.deviceId)
  }

  override fun deleteAllSessions(name: String) {
    for (deviceId in store.sessionDeviceIds(name)) store.deleteSession(name, deviceId)
  }

  // --- PreKeyStore ---

  override fun loadPreKey(preKeyId: Int): PreKeyRecord =
    guard {
      if (!store.hasPreKey(preKeyId)) throw InvalidKeyIdException("unknown prekey $preKeyId")
      store.loadPreKey(preKeyId)
    }

  override fun storePreKey(preKeyId: Int, record: PreKeyRecord) = store.savePreKey(preKeyId, record)

  override fun containsPreKey(preKeyId: Int): Boolean = store.hasPreKey(preKeyId)

  override fun removePreKey(preKeyId: Int) = store.removePreKey(preKeyId)

  // --- SignedPreKeyStore ---

  override fun loadSignedPreKey(signedPreKeyId: Int): SignedPreKeyRecord =
    guard {
      if (store.signedPreKeys().none { it.id == signedPreKeyId }) {
        throw InvalidKeyIdException("unknown signed prekey $signedPreKeyId")
      }
      store.loadSignedPreKey(signedPreKeyId)
    }

  override fun loadSignedPreKeys(): List<SignedPreKeyRecord> = store.signedPreKeys()

  override fun storeSignedPreKey(signedPreKeyId: Int, record: SignedPreKeyRecord) =
    store.saveSignedPreKey(signedPreKeyId, record)

  override fun containsSignedPreKey(signedPreKeyId: Int): Boolean = store.signedPreKeys().any { it.id == signedPreKeyId }

  override fun removeSignedPreKey(signedPreKeyId: Int) = store.removeSignedPreKey(signedPreKeyId)

  // --- KyberPreKeyStore helpers for the version-specific OperationStore ---

  protected fun kyberPreKey(kyberPreKeyId: Int): KyberPreKeyRecord =
    guard {
      if (!store.hasKyberPreKey(kyberPreKeyId)) throw InvalidKeyIdException("unknown Kyber prekey $kyberPreKeyId")
      store.loadKyberPreKey(kyberPreKeyId)
    }



  /** Called by the version-specific markKyberPreKeyUsed. */
  protected fun recordKyberPreKeyUse(kyberPreKeyId: Int, signedPreKeyId: Int, baseKey: ByteArray) =
    guard { store.markKyberPreKeyUsed(kyberPreKeyId, signedPreKeyId, baseKey) }

  // --- SenderKeyStore (groups): by sender device and distribution id, sealed like a session ---

  override fun storeSenderKey(sender: SignalProtocolAddress, distributionId: UUID, record: SenderKeyRecord) =
    store.saveSenderKey(Address(sender.name, sender.deviceId), distributionId.toString(), record)

  override fun loadSenderKey(sender: SignalProtocolAddress, distributionId: UUID): SenderKeyRecord? =
    store.loadSenderKey(Address(sender.name, sender.deviceId), distributionId.toString())
}
