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
  class Decrypted(val sender: Address, val plaintext: ByteArray) : DecryptOutcome()

  /**
   * The sender's key is not the one stored for its account (first contact or a change): nothing
   * was written. The caller confirms the key (the client core asks the relay) outside the
   * engine's transaction and calls decrypt again with the answer.
   */
  class NeedsConfirmation(val accountId: String, val identityKey: ByteArray) : DecryptOutcome()
}
