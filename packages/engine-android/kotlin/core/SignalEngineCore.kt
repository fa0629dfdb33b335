package org.privcomm.engine

import org.signal.libsignal.metadata.certificate.SenderCertificate
import org.signal.libsignal.metadata.certificate.ServerCertificate
import org.signal.libsignal.metadata.protocol.UnidentifiedSenderMessageContent
import org.signal.libsignal.protocol.DuplicateMessageException
import org.signal.libsignal.protocol.IdentityKey
import org.signal.libsignal.protocol.IdentityKeyPair
import org.signal.libsignal.protocol.NoSessionException
import org.signal.libsignal.protocol.SignalProtocolAddress
import org.signal.libsignal.protocol.UntrustedIdentityException
import org.signal.libsignal.protocol.ecc.ECKeyPair
import org.signal.libsignal.protocol.ecc.ECPrivateKey
import org.signal.libsignal.protocol.ecc.ECPublicKey
import org.signal.libsignal.protocol.fingerprint.NumericFingerprintGenerator
import org.signal.libsignal.protocol.groups.GroupCipher
import org.signal.libsignal.protocol.groups.GroupSessionBuilder
import org.signal.libsignal.protocol.groups.InvalidSenderKeySessionException
import org.signal.libsignal.protocol.kem.KEMKeyPair
import org.signal.libsignal.protocol.kem.KEMKeyType
import org.signal.libsignal.protocol.kem.KEMPublicKey
import org.signal.libsignal.protocol.message.CiphertextMessage
import org.signal.libsignal.protocol.message.PreKeySignalMessage
import org.signal.libsignal.protocol.message.SenderKeyDistributionMessage
import org.signal.libsignal.protocol.message.SenderKeyMessage
import org.signal.libsignal.protocol.message.SignalMessage
import org.signal.libsignal.protocol.state.IdentityKeyStore
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.PreKeyBundle
import org.signal.libsignal.protocol.state.PreKeyRecord
import org.signal.libsignal.protocol.state.SessionRecord
import org.signal.libsignal.protocol.state.SignedPreKeyRecord
import java.nio.ByteBuffer
import java.security.SecureRandom
import java.util.Optional
import java.util.UUID

/**
 * The Android SignalEngine's core: the official libsignal (PQXDH with Kyber prekeys, Double
 * Ratchet, sealed sender) over a SQLite protocol store whose private records are sealed by a
 * SecretSealer. Free of Android classes: the same code runs on the JVM for the tests (through
 * jvm/BridgeMain.kt) and on a phone (through the Expo module). Every operation is one SQLite
 * transaction, and operations on one engine run one at a time.
 *
 * It is a port of engine-node/src/node-engine.ts and behaves the same, byte for byte on the
 * wire. In particular sealed sender without a server: every message is sealed
 * (SEALED_SENDER_V1) with a self-issued certificate (a local "trust root" signs a server
 * certificate whose key signs a sender certificate naming our account, device and identity
 * key). The receiver does not check the trust root; it opens the sealed layers with
 * decrypt-to-USMC, whose v1 construction authenticates the certificate's key as the sender's
 * identity key, decrypts the inner message as the certificate's address, and requires that the
 * identity libsignal saved for that address is that same key. Whenever the key is not the one
 * stored for the account, decrypt asks the caller to confirm it (the client core checks it
 * against the relay's published identity) before anything is written. The long comment at the
 * top of node-engine.ts gives the reasoning in full.
 *
 * Groups use libsignal's sender keys: a group message is one SenderKeyMessage, put in the same
 * kind of self-certified content and sealed once for all its recipients (sealed sender v2, one
 * multi-recipient upload that the relay splits; each share arrives as SEALED_SENDER_V2_AT_REST,
 * sealed again by the relay to our identity key, and opened by AtRestShare first). v2
 * authenticates the certificate's key as the sender's identity key as v1 does. A sender key is
 * bound to its sender's address by the pairwise session its distribution message came over
 * (processSenderKeyDistribution, called with the sender that session authenticated); see
 * decryptGroupMessage for what decrypt checks.
 */
class SignalEngineCore private constructor(
  private val db: SqlDatabase,
  sealer: SecretSealer,
  private val now: () -> Long,
) {
  private val store = ProtocolStore(db, sealer)
  private val random = SecureRandom()
  private var certificate: Pair<String, SenderCertificate>? = null
  private var closed = false

  companion object {
    /** Ciphertext.type of every pairwise message this engine produces: sealed sender v1. */
    const val SEALED_SENDER_V1 = 1

    /**
     * Ciphertext.type of a device's share of a multi-recipient message (groupEncrypt) once the
     * relay has split it: sealed sender v2.
     */
    const val SEALED_SENDER_V2 = 2

    /**
     * Ciphertext.type of such a share as the relay stores it now: sealed again to the recipient
     * account's identity key (AtRestShare), so that the stored shares of one upload share no bytes.
     */
    const val SEALED_SENDER_V2_AT_REST = 3

    /** Far beyond any device's lifetime: certificates are self-issued and never rotated. */
    const val CERTIFICATE_EXPIRY_MS = 253_402_300_799_000L // 9999-12-31
    private const val FINGERPRINT_ITERATIONS = 5200
    private const val FINGERPRINT_VERSION = 2
    private const val MAX_DEVICE_ID = 127
    private const val MAX_BATCH = 1000

    /**
     * The most devices one groupEncrypt seals for: as many as one relay upload may name (1,000
     * accounts of up to 6 devices: MAX_MULTI_RECIPIENT_ACCOUNTS and MAX_DEVICES_PER_ACCOUNT in
     * packages/wire), as the Node engine.
     */
    const val MAX_GROUP_RECIPIENTS = 6000

    /**
     * How long a replaced signed or last-resort prekey stays: a session start made from it can
     * still arrive for 60 days (30 of an unacknowledged session, then 30 in the relay's queue).
     */
    const val SUPERSEDED_PREKEY_GRACE_MS = 60L * 24 * 60 * 60 * 1000

    /** Account ids are the relay's canonical lowercase UUIDs, and only that spelling. */
    private val ACCOUNT_ID = Regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

    fun isAccountId(value: String) = ACCOUNT_ID.matches(value)

    /** Distribution ids are random UUIDs, spelled as account ids are. */
    private fun checkDistributionId(value: String): UUID {
      require(ACCOUNT_ID.matches(value)) { "distribution id $value is not a lowercase UUID" }
      return UUID.fromString(value)
    }

    private fun isDeviceId(value: Int) = value in 1..MAX_DEVICE_ID

    /** Opens the engine over `db` (creating the schema in a new database). One engine per database. */
    fun open(db: SqlDatabase, sealer: SecretSealer, now: () -> Long = System::currentTimeMillis): SignalEngineCore {
      db.transaction {
        val version = (db.query("PRAGMA user_version").first().values.first() as Number).toInt()
        if (version > StoreSchema.VERSION) {
          throw IllegalStateException("unsupported engine store version $version (newer than this engine)")
        }
        if (version < StoreSchema.VERSION) {
          for (step in StoreSchema.STEPS.drop(version)) step.forEach { db.update(it) }
          db.update("PRAGMA user_version = ${StoreSchema.VERSION}")
        }
      }
      return SignalEngineCore(db, sealer, now)
    }

    private fun checkCount(count: Int) {
      require(count in 0..MAX_BATCH) { "count must be an integer from 0 to $MAX_BATCH" }
    }

    private fun checkAddress(address: Address) {
      require(isAccountId(address.accountId)) { "account id ${address.accountId} is not a lowercase UUID" }
      require(isDeviceId(address.deviceId)) { "device id ${address.deviceId} is out of range" }
    }

    private fun uuidBytes(accountId: String): ByteArray {
      val uuid = UUID.fromString(accountId)
      return ByteBuffer.allocate(16).putLong(uuid.mostSignificantBits).putLong(uuid.leastSignificantBits).array()
    }
  }

  /** Runs one operation in one transaction, with the libsignal stores bound to it. */
  @Synchronized
  private fun <T> run(operation: (OperationStore) -> T): T {
    if (closed) throw IllegalStateException("the engine is closed")
    val deferred = mutableListOf<() -> Unit>()
    try {
      return db.transaction { operation(OperationStore(store) { deferred.add(it) }) }
    } catch (error: Throwable) {
      if (deferred.isNotEmpty()) {
        try {
          db.transaction { deferred.forEach { it() } }
        } catch (_: Exception) {
          // The refusal itself stands; only its record for the UI is lost.
        }
      }
      throw error
    }
  }

  /**
   * Translates libsignal's exceptions into the engine's codes. An EngineException thrown by one
   * of our store callbacks may come back wrapped by libsignal, so it is taken from the stores.
   */
  private fun engineError(error: Throwable, accountId: String, fallback: EngineException, stores: OperationStore): Throwable {
    if (error is EngineException) return error
    stores.firstFailure?.let { return it }
    return when (error) {
      is UntrustedIdentityException -> untrustedIdentity(accountId)
      is DuplicateMessageException -> EngineException(EngineErrorCode.DUPLICATE_MESSAGE, "this message was already decrypted")
      is Exception -> fallback
      else -> error
    }
  }

  private fun localAddress(): SignalProtocolAddress {
    val accountId = store.getMetaText("local_account_id")
    val deviceId = store.getMetaNumber("local_device_id")
    if (accountId == null || deviceId == null) {
      throw EngineException(EngineErrorCode.NO_IDENTITY, "this device has no address yet (setLocalAddress)")
    }
    return SignalProtocolAddress(accountId, deviceId.toInt())
  }

  /** Our self-issued sender certificate (see the class comment). */
  private fun senderCertificate(identity: IdentityKeyPair, local: SignalProtocolAddress): SenderCertificate {
    val key = "$local/${identity.publicKey.serialize().joinToString("") { "%02x".format(it) }}"
    certificate?.let { (cached, value) -> if (cached == key) return value }
    val trustRoot = store.getMetaBytes("trust_root")
    val serverKey = store.getMetaBytes("server_key")
    if (trustRoot == null || serverKey == null) {
      throw EngineException(EngineErrorCode.NO_IDENTITY, "this device has no certificate keys")
    }
    val server = ECPrivateKey(serverKey)
    val serverCertificate = ServerCertificate(ECPrivateKey(trustRoot), 1, server.getPublicKey())
    val issued = serverCertificate.issue(
      server,
      local.name,
      Optional.empty(),
      local.deviceId,
      identity.publicKey.publicKey,
      CERTIFICATE_EXPIRY_MS,
    )
    certificate = key to issued
    return issued
  }

  fun createIdentity(): LocalIdentity = run {
    if (store.identityKeyPair() != null) {
      throw EngineException(EngineErrorCode.IDENTITY_EXISTS, "this device already has an identity")
    }
    importIdentity(IdentityKeyPair.generate())
  }

  private fun importIdentity(pair: IdentityKeyPair): LocalIdentity {
    // libsignal registration ids are 14-bit; the relay accepts 1..16380.
    val registrationId = random.nextInt(16380) + 1
    store.setMeta("identity_key_pair", pair.serialize())
    store.setMeta("registration_id", registrationId.toLong())
    // The keys that self-issue our sender certificates (see the class comment).
    store.setMeta("trust_root", ECPrivateKey.generate().serialize())
    store.setMeta("server_key", ECPrivateKey.generate().serialize())
    return LocalIdentity(pair.publicKey.serialize(), registrationId)
  }

  fun localIdentity(): LocalIdentity? = run {
    val pair = store.identityKeyPair()
    val registrationId = store.registrationId()
    if (pair == null || registrationId == null) null else LocalIdentity(pair.publicKey.serialize(), registrationId)
  }

  fun setLocalAddress(address: Address) {
    checkAddress(address)
    run {
      store.setMeta("local_account_id", address.accountId)
      store.setMeta("local_device_id", address.deviceId.toLong())
    }
  }

  fun generatePreKeys(count: Int): List<PublicPreKey> {
    checkCount(count)
    return run {
      store.requireIdentityKeyPair()
      List(count) {
        val keyId = store.nextKeyId("next_prekey_id")
        val keyPair = ECKeyPair.generate()
        store.savePreKey(keyId, PreKeyRecord(keyId, keyPair))
        PublicPreKey(keyId, keyPair.publicKey.serialize())
      }
    }
  }

  fun generateKyberPreKeys(count: Int): List<PublicSignedPreKey> {
    checkCount(count)
    return run {
      val identity = store.requireIdentityKeyPair()
      List(count) { newKyberPreKey(identity, lastResort = false) }
    }
  }

  fun generateKyberLastResortPreKey(): PublicSignedPreKey = run {
    val key = newKyberPreKey(store.requireIdentityKeyPair(), lastResort = true)
    store.retireLastResortKyberPreKeys(now(), SUPERSEDED_PREKEY_GRACE_MS)
    key
  }

  private fun newKyberPreKey(identity: IdentityKeyPair, lastResort: Boolean): PublicSignedPreKey {
    val keyId = store.nextKeyId("next_kyber_prekey_id")
    val keyPair = KEMKeyPair.generate(KEMKeyType.KYBER_1024)
    val publicKey = keyPair.publicKey.serialize()
    val signature = identity.privateKey.calculateSignature(publicKey)
    store.saveKyberPreKey(keyId, KyberPreKeyRecord(keyId, now(), keyPair, signature), lastResort)
    return PublicSignedPreKey(keyId, publicKey, signature)
  }

  fun generateSignedPreKey(): PublicSignedPreKey = run {
    val identity = store.requireIdentityKeyPair()
    val time = now()
    val keyId = store.nextKeyId("next_signed_prekey_id")
    val keyPair = ECKeyPair.generate()
    val publicKey = keyPair.publicKey.serialize()
    val signature = identity.privateKey.calculateSignature(publicKey)
    store.saveSignedPreKey(keyId, SignedPreKeyRecord(keyId, time, keyPair, signature))
    store.retireSignedPreKeys(time, SUPERSEDED_PREKEY_GRACE_MS)
    PublicSignedPreKey(keyId, publicKey, signature)
  }

  fun processBundle(address: Address, bundle: RemoteBundle) {
    checkAddress(address)
    run { stores ->
      store.requireIdentityKeyPair()
      val local = localAddress()
      val preKeyBundle =
        try {
          PreKeyBundle(
            bundle.registrationId,
            bundle.deviceId,
            bundle.preKey?.keyId ?: PreKeyBundle.NULL_PRE_KEY_ID,
            bundle.preKey?.let { ECPublicKey(it.publicKey) },
            bundle.signedPreKey.keyId,
            ECPublicKey(bundle.signedPreKey.publicKey),
            bundle.signedPreKey.signature,
            IdentityKey(bundle.identityKey),
            bundle.kyberPreKey.keyId,
            KEMPublicKey(bundle.kyberPreKey.publicKey),
            bundle.kyberPreKey.signature,
          )
        } catch (error: Exception) {
          throw invalidMessage("the bundle is malformed")
        }
      try {
        Libsignal.processBundle(stores, local, SignalProtocolAddress(address.accountId, address.deviceId), preKeyBundle)
      } catch (error: Exception) {
        throw engineError(error, address.accountId, invalidMessage("the bundle is invalid"), stores)
      }
    }
  }

  fun hasSession(address: Address): Boolean {
    checkAddress(address)
    return run { store.loadSession(address.accountId, address.deviceId)?.hasSenderChain() ?: false }
  }

  fun sessionDeviceIds(accountId: String): List<Int> = run {
    store.sessionDeviceIds(accountId).filter { store.loadSession(accountId, it)?.hasSenderChain() == true }
  }

  fun deleteSession(address: Address) {
    checkAddress(address)
    run { store.deleteSession(address.accountId, address.deviceId) }
  }

  fun encrypt(address: Address, plaintext: ByteArray): EncryptedMessage {
    checkAddress(address)
    return run { stores ->
      val identity = store.requireIdentityKeyPair()
      val local = localAddress()
      val session = store.loadSession(address.accountId, address.deviceId)
      if (session == null || !session.hasSenderChain()) {
        throw EngineException(EngineErrorCode.NO_SESSION, "no session with ${address.accountId}")
      }
      val remote = SignalProtocolAddress(address.accountId, address.deviceId)
      try {
        val message = Libsignal.encrypt(stores, local, remote, plaintext)
        val content = UnidentifiedSenderMessageContent(
          message,
          senderCertificate(identity, local),
          UnidentifiedSenderMessageContent.CONTENT_HINT_DEFAULT,
          Optional.empty(),
        )
        val sealed = Libsignal.seal(stores, local, remote, content)
        EncryptedMessage(SEALED_SENDER_V1, sealed, session.remoteRegistrationId)
      } catch (error: Exception) {
        throw engineError(
          error,
          address.accountId,
          EngineException(EngineErrorCode.NO_SESSION, "cannot encrypt for ${address.accountId}"),
          stores,
        )
      }
    }
  }

  /**
   * One decrypt attempt. Idempotent per `envelopeId` (see SignalEngine.decrypt). With
   * `confirming` set, a sender key not stored for its account stops the attempt before anything
   * is written (NeedsConfirmation); the caller asks, then calls again with `answer`. The caller
   * thus never holds the store while it waits.
   */
  fun decrypt(
    envelopeId: String,
    type: Int,
    content: ByteArray,
    confirming: Boolean,
    answer: IdentityConfirmation?,
  ): DecryptOutcome = run { stores ->
    store.decrypted(envelopeId)?.let { return@run it }
    val identity = store.requireIdentityKeyPair()
    val local = localAddress()
    // The relay seals v2 shares at rest to our identity key: opened first, then as v2.
    val opened =
      when (type) {
        SEALED_SENDER_V1, SEALED_SENDER_V2 -> content
        SEALED_SENDER_V2_AT_REST -> AtRestShare.open(content, identity)
        else -> throw invalidMessage("unknown ciphertext type $type")
      }
    val sealed =
      try {
        Libsignal.decryptToUsmc(opened, stores)
      } catch (error: Exception) {
        throw engineError(error, "", invalidMessage("the sealed message cannot be opened"), stores)
      }
    val certificate = sealed.senderCertificate
    val sender = Address(certificate.senderUuid, certificate.senderDeviceId)
    if (!isAccountId(sender.accountId) || !isDeviceId(sender.deviceId)) {
      throw invalidMessage("the sender certificate names no valid device")
    }
    if (sender.accountId == local.name && sender.deviceId == local.deviceId) {
      throw invalidMessage("a message from this very device")
    }
    val certificateKey = certificate.key.serialize()
    if (sealed.type == CiphertextMessage.SENDERKEY_TYPE) {
      val decrypted = decryptGroupMessage(stores, sender, certificateKey, sealed.content)
      store.saveDecrypted(envelopeId, decrypted)
      return@run decrypted
    }
    val known = store.identity(sender.accountId)
    val isKnown = known != null &&
      (known.identityKey.contentEquals(certificateKey) || known.pendingKey?.contentEquals(certificateKey) == true)
    if (!isKnown && confirming) {
      // Before libsignal stores anything: a refused key must leave no trace.
      val answered = answer != null && answer.accountId == sender.accountId &&
        answer.identityKey.contentEquals(certificateKey)
      if (!answered) return@run DecryptOutcome.NeedsConfirmation(sender.accountId, certificateKey)
      if (!answer!!.confirmed) {
        throw EngineException(
          EngineErrorCode.UNCONFIRMED_IDENTITY,
          "the sender's key is not the identity the relay publishes for ${sender.accountId}",
        )
      }
    }
    val remote = SignalProtocolAddress(sender.accountId, sender.deviceId)
    val plaintext =
      try {
        when (sealed.type) {
          CiphertextMessage.PREKEY_TYPE ->
            Libsignal.decryptPreKey(stores, local, remote, PreKeySignalMessage(sealed.content))
          CiphertextMessage.WHISPER_TYPE -> Libsignal.decryptWhisper(stores, local, remote, SignalMessage(sealed.content))
          else -> throw invalidMessage("unexpected sealed message type ${sealed.type}")
        }
      } catch (error: Exception) {
        throw engineError(error, sender.accountId, invalidMessage("the message cannot be decrypted"), stores)
      }
    // The certificate key is the one the sealed-sender layer authenticated; it must be the
    // identity the session decrypted with.
    val decryptedWith = stores.savedIdentities[remote.toString()]
    if (decryptedWith == null || !decryptedWith.serialize().contentEquals(certificateKey)) {
      throw invalidMessage("the sender certificate does not match the session identity")
    }
    DecryptOutcome.Decrypted(sender, plaintext).also { store.saveDecrypted(envelopeId, it) }
  }

  /**
   * A group message (a SenderKeyMessage inside the sealed content). What authenticates its
   * sender: the sender key was stored under the address of the pairwise (authenticated) message
   * that carried its distribution message, so only the device holding that key's signing key,
   * handed out by that address, can produce a message GroupCipher accepts for it. On top, the
   * seal names the sender's identity key (authenticated as for v1) and it must be the account's
   * current identity, as the pairwise path requires: sender keys are dropped when an account's
   * identity changes, so a stored one came with the current identity. Stores no identity, so it
   * asks for no confirmation. Nothing is written unless the message decrypts.
   */
  private fun decryptGroupMessage(
    stores: OperationStore,
    sender: Address,
    certificateKey: ByteArray,
    content: ByteArray,
  ): DecryptOutcome.Decrypted {
    val distributionId =
      try {
        SenderKeyMessage(content).distributionId.toString()
      } catch (error: Exception) {
        throw invalidMessage("the group message is malformed")
      }
    if (store.loadSenderKey(sender, distributionId) == null) throw NoSenderKeyException(sender, distributionId)
    val identity =
      if (sender.accountId == localAddress().name) {
        // One of our own other devices: they share our identity key.
        store.requireIdentityKeyPair().publicKey.serialize()
      } else {
        store.identity(sender.accountId)?.identityKey
      }
    if (identity == null || !identity.contentEquals(certificateKey)) {
      throw invalidMessage("the sender certificate does not match the sender identity")
    }
    val plaintext =
      try {
        GroupCipher(stores, SignalProtocolAddress(sender.accountId, sender.deviceId)).decrypt(content)
      } catch (error: NoSessionException) {
        // A key for this distribution id, but not the chain the message was sent on.
        throw NoSenderKeyException(sender, distributionId)
      } catch (error: InvalidSenderKeySessionException) {
        throw NoSenderKeyException(sender, distributionId)
      } catch (error: Exception) {
        throw engineError(error, sender.accountId, invalidMessage("the group message cannot be decrypted"), stores)
      }
    return DecryptOutcome.Decrypted(sender, plaintext, distributionId)
  }

  /**
   * This device's sender key distribution message for `distributionId`, the key made on first
   * use. Always the first message (the chain at its start), not libsignal's current one: a member
   * who gets the key late (it asked after NO_SENDER_KEY) can then still open the messages sent
   * before, which it kept. The price: until the distribution id is replaced, the store holds the
   * chain's start (sealed, as every private record), so whoever seizes the store and its key and
   * recorded this device's group ciphertexts under that id can open them: no forward secrecy
   * within one distribution id. Callers bound that by starting a new distribution id on every
   * removal. The same rule as the Node engine.
   */
  fun senderKeyDistribution(distributionId: String): ByteArray {
    val id = checkDistributionId(distributionId)
    return run { stores ->
      store.requireIdentityKeyPair()
      ownDistribution(stores, localAddress(), id)
    }
  }

  /** Our first distribution message for `id`, making the sender key if there is none yet. */
  private fun ownDistribution(stores: OperationStore, local: SignalProtocolAddress, id: UUID): ByteArray {
    store.ownDistribution(id.toString())?.let { return it }
    // Our own key is made only here (processSenderKeyDistribution refuses this device's
    // address), so a key without its first message cannot exist.
    val message =
      try {
        GroupSessionBuilder(stores).create(local, id).serialize()
      } catch (error: Exception) {
        throw engineError(error, "", invalidMessage("the sender key cannot be created"), stores)
      }
    store.saveOwnDistribution(id.toString(), message)
    return message
  }

  /**
   * Stores `sender`'s sender key from its distribution message. The caller took the message out
   * of a pairwise message that `sender` sent (decrypt authenticated it): that binds the key to
   * the sender's address.
   */
  fun processSenderKeyDistribution(sender: Address, message: ByteArray) {
    checkAddress(sender)
    run { stores ->
      store.requireIdentityKeyPair()
      val local = localAddress()
      if (sender.accountId == local.name && sender.deviceId == local.deviceId) {
        // Our own sender key holds its private signing key; a distribution message would not.
        throw invalidMessage("a sender key distribution message from this very device")
      }
      val distribution =
        try {
          SenderKeyDistributionMessage(message)
        } catch (error: Exception) {
          throw invalidMessage("the bytes are not a sender key distribution message")
        }
      try {
        GroupSessionBuilder(stores).process(SignalProtocolAddress(sender.accountId, sender.deviceId), distribution)
      } catch (error: Exception) {
        throw engineError(error, sender.accountId, invalidMessage("the sender key distribution message is invalid"), stores)
      }
    }
  }

  /**
   * Encrypts `plaintext` once with this device's sender key for `distributionId` (created on
   * first use) and seals it, in the same self-certified content as a pairwise message, for
   * every recipient device in one multi-recipient message (sealed sender v2). Needs a session
   * with each recipient (NO_SESSION names those without one), and refuses, as encrypt does, an
   * account whose verified key changed (UNTRUSTED_IDENTITY).
   */
  fun groupEncrypt(distributionId: String, recipients: List<Address>, plaintext: ByteArray): MultiRecipientMessage {
    val id = checkDistributionId(distributionId)
    require(recipients.size in 1..MAX_GROUP_RECIPIENTS) { "a group message goes to 1 to $MAX_GROUP_RECIPIENTS devices" }
    recipients.forEach(::checkAddress)
    require(recipients.toSet().size == recipients.size) { "a recipient device is listed twice" }
    return run { stores ->
      val identity = store.requireIdentityKeyPair()
      val local = localAddress()
      require(recipients.none { it.accountId == local.name && it.deviceId == local.deviceId }) {
        "this device cannot be a recipient of its own group message"
      }
      val sessions = recipients.map { store.loadSession(it.accountId, it.deviceId)?.takeIf(SessionRecord::hasSenderChain) }
      val missing = recipients.filterIndexed { i, _ -> sessions[i] == null }
      if (missing.isNotEmpty()) {
        throw EngineException(
          EngineErrorCode.NO_SESSION,
          "no session with ${missing.joinToString(", ") { "${it.accountId}.${it.deviceId}" }}",
        )
      }
      val addresses = recipients.map { SignalProtocolAddress(it.accountId, it.deviceId) }
      // libsignal's multi-recipient encryption does not ask the identity store about trust.
      addresses.forEachIndexed { i, address ->
        val trusted = stores.isTrustedIdentity(address, sessions[i]!!.remoteIdentityKey, IdentityKeyStore.Direction.SENDING)
        if (!trusted) throw untrustedIdentity(address.name)
      }
      try {
        // Makes this device's sender key on first use, as senderKeyDistribution does.
        ownDistribution(stores, local, id)
        val message = GroupCipher(stores, local).encrypt(id, plaintext)
        val content = UnidentifiedSenderMessageContent(
          message,
          senderCertificate(identity, local),
          UnidentifiedSenderMessageContent.CONTENT_HINT_DEFAULT,
          Optional.empty(),
        )
        val sealed = Libsignal.sealForMany(stores, local, addresses, sessions.map { it!! }, content)
        MultiRecipientMessage(
          SEALED_SENDER_V2,
          sealed,
          recipients.mapIndexed { i, address -> MultiRecipientDevice(address, sessions[i]!!.remoteRegistrationId) },
        )
      } catch (error: Exception) {
        throw engineError(
          error,
          "",
          EngineException(EngineErrorCode.NO_SESSION, "cannot encrypt for the group's devices"),
          stores,
        )
      }
    }
  }

  fun forgetDecrypted(envelopeId: String) = run { store.forgetDecrypted(envelopeId) }

  fun identityState(accountId: String): IdentityState? = run {
    store.identity(accountId)?.let { IdentityState(it.identityKey, it.verified, it.changed, it.pendingKey) }
  }

  fun setVerified(accountId: String, verified: Boolean) = run {
    val row = requireIdentity(accountId)
    if (verified) {
      // Verifying the current key acknowledges a change to it; a pending key stays pending.
      store.putIdentity(accountId, row.copy(verified = true, changed = if (row.pendingKey == null) false else row.changed))
    } else if (row.pendingKey != null) {
      // Unverified accounts follow trust on first use: the pending key takes over.
      replaceIdentity(accountId, row.pendingKey, changed = true)
    } else {
      store.putIdentity(accountId, row.copy(verified = false))
    }
  }

  fun acceptIdentity(accountId: String) = run {
    val row = requireIdentity(accountId)
    if (row.pendingKey != null) {
      replaceIdentity(accountId, row.pendingKey, changed = false)
    } else {
      store.putIdentity(accountId, row.copy(changed = false))
    }
  }

  /**
   * A new current key: sessions made with the old one lead to devices that no longer exist, and
   * the sender keys that came over them go too.
   */
  private fun replaceIdentity(accountId: String, key: ByteArray, changed: Boolean) {
    store.putIdentity(accountId, IdentityRow(key, verified = false, changed = changed, pendingKey = null))
    for (deviceId in store.sessionDeviceIds(accountId)) store.deleteSession(accountId, deviceId)
    store.deleteSenderKeys(accountId)
  }

  private fun requireIdentity(accountId: String): IdentityRow =
    store.identity(accountId)
      ?: throw EngineException(EngineErrorCode.NO_IDENTITY, "no identity key is known for $accountId")

  fun safetyNumber(accountId: String): SafetyNumber = run {
    val identity = store.requireIdentityKeyPair()
    val local = localAddress()
    val remote = requireIdentity(accountId)
    val fingerprint = NumericFingerprintGenerator(FINGERPRINT_ITERATIONS).createFor(
      FINGERPRINT_VERSION,
      uuidBytes(local.name),
      identity.publicKey,
      uuidBytes(accountId),
      IdentityKey(remote.identityKey),
    )
    SafetyNumber(fingerprint.displayableFingerprint.displayText, fingerprint.scannableFingerprint.serialized)
  }

  fun createProvisioningKey(): ByteArray = run {
    val key = ECPrivateKey.generate()
    store.setMeta("provisioning_key", key.serialize())
    key.getPublicKey().serialize()
  }

  fun sealProvisioning(recipientKey: ByteArray, payload: ByteArray): ByteArray = run {
    Provisioning.seal(recipientKey, store.requireIdentityKeyPair().serialize(), payload)
  }

  fun openProvisioning(ciphertext: ByteArray): ByteArray = run {
    val key = store.getMetaBytes("provisioning_key")
      ?: throw EngineException(EngineErrorCode.INVALID_PROVISIONING, "no provisioning key is waiting")
    val (identityKeyPair, payload) = Provisioning.open(ECPrivateKey(key), ciphertext)
    if (store.identityKeyPair() != null) {
      throw EngineException(EngineErrorCode.IDENTITY_EXISTS, "this device already has an identity")
    }
    val pair =
      try {
        IdentityKeyPair(identityKeyPair)
      } catch (error: Exception) {
        throw EngineException(EngineErrorCode.INVALID_PROVISIONING, "the identity key pair is malformed")
      }
    importIdentity(pair)
    store.deleteMeta("provisioning_key")
    payload
  }

  /**
   * Erases every row of every table in one transaction (secure_delete overwrites them), VACUUMs
   * so that no freed page keeps a copy, and closes; the schema stays, so the database opens
   * again as a new engine. The Node engine's wipe does the same (engine-node/src/sqlite.ts).
   */
  @Synchronized
  fun wipe() {
    if (closed) throw IllegalStateException("the engine is closed")
    closed = true
    certificate = null
    try {
      val tables = db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .map { it["name"] as String }
      db.transaction { tables.forEach { db.update("DELETE FROM \"$it\"") } }
      db.update("VACUUM")
    } finally {
      db.close()
    }
  }

  @Synchronized
  fun close() {
    if (closed) return
    closed = true
    db.close()
  }
}
