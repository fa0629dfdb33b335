package org.privcomm.engine

/** The values of the SignalEngine interface (packages/client/src/engine.ts), on the Kotlin side. */

data class Address(val accountId: String, val deviceId: Int)

class LocalIdentity(val identityKey: ByteArray, val registrationId: Int)

class PublicPreKey(val keyId: Int, val publicKey: ByteArray)

class PublicSignedPreKey(val keyId: Int, val publicKey: ByteArray, val signature: ByteArray)

class RemoteBundle(
  val identityKey: ByteArray,
  val deviceId: Int,
  val registrationId: Int,
  val signedPreKey: PublicSignedPreKey,
  val preKey: PublicPreKey?,
  val kyberPreKey: PublicSignedPreKey,
)

class EncryptedMessage(val type: Int, val content: ByteArray, val registrationId: Int)

/** One recipient device of a multi-recipient message, with its session's registration id. */
class MultiRecipientDevice(val address: Address, val registrationId: Int)

/** One sealed sender v2 upload for many devices (see SignalEngineCore.groupEncrypt). */
class MultiRecipientMessage(val type: Int, val content: ByteArray, val recipients: List<MultiRecipientDevice>)

class IdentityState(
  val identityKey: ByteArray,
  val verified: Boolean,
  val changed: Boolean,
  val pendingIdentityKey: ByteArray?,
)

class SafetyNumber(val digits: String, val scannable: ByteArray)

/** The caller's answer about a sender key the engine asked to have confirmed (see decrypt). */
class IdentityConfirmation(val accountId: String, val identityKey: ByteArray, val confirmed: Boolean)

sealed class DecryptOutcome {
  /** `distributionId` is set for a group message (decrypted with the sender's sender key). */
  class Decrypted(val sender: Address, val plaintext: ByteArray, val distributionId: String? = null) :
    DecryptOutcome()

  /**
   * The sender's key is not the one stored for its account (first contact or a change): nothing
   * was written. The caller confirms the key (the client core asks the relay) outside the
   * engine's transaction and calls decrypt again with the answer.
   */
  class NeedsConfirmation(val accountId: String, val identityKey: ByteArray) : DecryptOutcome()
}
