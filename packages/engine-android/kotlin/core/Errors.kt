package org.privcomm.engine

/** The SignalEngine error codes (packages/client/src/engine.ts, EngineError): stable across engines. */
enum class EngineErrorCode {
  UNTRUSTED_IDENTITY,
  UNCONFIRMED_IDENTITY,
  NO_SESSION,
  INVALID_MESSAGE,
  DUPLICATE_MESSAGE,
  NO_IDENTITY,
  IDENTITY_EXISTS,
  INVALID_PROVISIONING,
  NO_SENDER_KEY,
}

/** An engine failure with its stable code; `accountId` is set for UNTRUSTED_IDENTITY. */
open class EngineException(
  val code: EngineErrorCode,
  message: String,
  val accountId: String? = null,
) : RuntimeException(message)

fun untrustedIdentity(accountId: String) =
  EngineException(
    EngineErrorCode.UNTRUSTED_IDENTITY,
    "the identity key of $accountId changed since it was verified",
    accountId,
  )

fun invalidMessage(reason: String) = EngineException(EngineErrorCode.INVALID_MESSAGE, reason)

/**
 * A group message whose sender key this device lacks (NO_SENDER_KEY): the caller keeps the
 * envelope, asks `sender` for its key pairwise, and decrypts again once it has arrived.
 */
class NoSenderKeyException(val sender: Address, val distributionId: String) :
  EngineException(
    EngineErrorCode.NO_SENDER_KEY,
    "no sender key from ${sender.accountId}.${sender.deviceId} for $distributionId",
  )
