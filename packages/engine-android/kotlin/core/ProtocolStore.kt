package org.privcomm.engine

import org.signal.libsignal.protocol.IdentityKeyPair
import org.signal.libsignal.protocol.groups.state.SenderKeyRecord
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.PreKeyRecord
import org.signal.libsignal.protocol.state.SessionRecord
import org.signal.libsignal.protocol.state.SignedPreKeyRecord

/** A remote account's identity row (see IdentityState; one per account, all devices share it). */
data class IdentityRow(
  val identityKey: ByteArray,
  val verified: Boolean,
  val changed: Boolean,
  val pendingKey: ByteArray?,
)

/** The meta keys whose values are private and therefore sealed. */
private val SEALED_META = setOf("identity_key_pair", "trust_root", "server_key", "provisioning_key")

/** libsignal prekey ids are 24-bit. */
private const val MAX_KEY_ID = 0xffffff

/**
 * The ids of the keys that a newer key replaced at least `graceMs` before `now`: each key is
 * superseded when the next one (by creation time) was made. The newest key is never among them.
 * The same rule as engine-node/src/store.ts.
 */
internal fun superseded(keys: List<Pair<Int, Long>>, now: Long, graceMs: Long): List<Int> {
  val byAge = keys.sortedBy { it.second }
  return byAge.indices
    .filter { i -> i + 1 < byAge.size && now - byAge[i + 1].second >= graceMs }
    .map { i -> byAge[i].first }
}

/**
 * The protocol store: typed access to the tables, with every private record sealed by the
 * SecretSealer. Only ever used inside one of the engine's transactions.
 */
class ProtocolStore(private val db: SqlDatabase, private val sealer: SecretSealer) {
  private fun seal(bytes: ByteArray, context: String) = sealer.seal(bytes, context)

  private fun open(bytes: ByteArray, context: String) =
    try {
      sealer.open(bytes, context)
    } catch (error: Exception) {
      // A record that does not open is damage or tampering, never a reason to go on silently.
      throw IllegalStateException("the sealed record $context cannot be opened", error)
    }

  private fun meta(key: String): Any? =
    db.query("SELECT value FROM meta WHERE key = ?", key).firstOrNull()?.get("value")

  fun setMeta(key: String, value: Any) {
    val stored = if (key in SEALED_META) seal(value as ByteArray, "meta:$key") else value
    db.update(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      stored,
    )
  }

  fun getMetaBytes(key: String): ByteArray? {
    val value = meta(key) as? ByteArray ?: return null
    return if (key in SEALED_META) open(value, "meta:$key") else value
  }

  fun getMetaText(key: String): String? = meta(key) as? String

  fun getMetaNumber(key: String): Long? = (meta(key) as? Number)?.toLong()

  fun deleteMeta(key: String) {
    db.update("DELETE FROM meta WHERE key = ?", key)
  }

  /** The next key id of a kind: 1, 2, ... wrapping within libsignal's 24-bit range. */
  fun nextKeyId(counter: String): Int {
    val id = getMetaNumber(counter)?.toInt() ?: 1
    setMeta(counter, (if (id >= MAX_KEY_ID) 1 else id + 1).toLong())
    return id
  }

  fun identityKeyPair(): IdentityKeyPair? = getMetaBytes("identity_key_pair")?.let { IdentityKeyPair(it) }

  fun requireIdentityKeyPair(): IdentityKeyPair =
    identityKeyPair() ?: throw EngineException(EngineErrorCode.NO_IDENTITY, "this device has no identity yet")

  fun registrationId(): Int? = getMetaNumber("registration_id")?.toInt()

  // --- one-time EC prekeys, signed prekeys, Kyber prekeys ---

  fun savePreKey(id: Int, record: PreKeyRecord) {
    db.update(
      "INSERT OR REPLACE INTO prekeys (id, record) VALUES (?, ?)",
      id.toLong(),
      seal(record.serialize(), "prekeys:$id"),
    )
  }

  fun loadPreKey(id: Int): PreKeyRecord {
    val row = db.query("SELECT record FROM prekeys WHERE id = ?", id.toLong()).firstOrNull()
      ?: throw invalidMessage("unknown prekey $id")
    return PreKeyRecord(open(row["record"] as ByteArray, "prekeys:$id"))
  }

  fun hasPreKey(id: Int): Boolean = db.query("SELECT id FROM prekeys WHERE id = ?", id.toLong()).isNotEmpty()

  fun removePreKey(id: Int) {
    db.update("DELETE FROM prekeys WHERE id = ?", id.toLong())
  }

  fun saveSignedPreKey(id: Int, record: SignedPreKeyRecord) {
    db.update(
      "INSERT OR REPLACE INTO signed_prekeys (id, record) VALUES (?, ?)",
      id.toLong(),
      seal(record.serialize(), "signed_prekeys:$id"),
    )
  }

  fun loadSignedPreKey(id: Int): SignedPreKeyRecord {
    val row = db.query("SELECT record FROM signed_prekeys WHERE id = ?", id.toLong()).firstOrNull()
      ?: throw invalidMessage("unknown signed prekey $id")
    return SignedPreKeyRecord(open(row["record"] as ByteArray, "signed_prekeys:$id"))
  }

  fun signedPreKeys(): List<SignedPreKeyRecord> =
    db.query("SELECT id, record FROM signed_prekeys").map {
      SignedPreKeyRecord(open(it["record"] as ByteArray, "signed_prekeys:${it["id"]}"))
    }

  fun removeSignedPreKey(id: Int) {
    db.update("DELETE FROM signed_prekeys WHERE id = ?", id.toLong())
  }

  /**
   * Deletes the signed prekeys that a newer one replaced at least `graceMs` before `now`, so
   * that a later compromise of this device cannot open old session starts. The newest key
   * always stays. Returns the ids deleted.
   */
  fun retireSignedPreKeys(now: Long, graceMs: Long): List<Int> {
    val retired = superseded(signedPreKeys().map { it.id to it.timestamp }, now, graceMs)
    for (id in retired) removeSignedPreKey(id)
    return retired
  }

  /** As retireSignedPreKeys, for the Kyber last-resort prekeys (and their remembered uses). */
  fun retireLastResortKyberPreKeys(now: Long, graceMs: Long): List<Int> {
    val keys = db.query("SELECT id, record FROM kyber_prekeys WHERE last_resort = 1").map {
      KyberPreKeyRecord(open(it["record"] as ByteArray, "kyber_prekeys:${it["id"]}"))
    }
    val retired = superseded(keys.map { it.id to it.timestamp }, now, graceMs)
    for (id in retired) {
      db.update("DELETE FROM kyber_prekeys WHERE id = ?", id.toLong())
      db.update("DELETE FROM kyber_prekey_uses WHERE kyber_id = ?", id.toLong())
    }
    return retired
  }

  fun saveKyberPreKey(id: Int, record: KyberPreKeyRecord, lastResort: Boolean) {
    db.update(
      "INSERT OR REPLACE INTO kyber_prekeys (id, record, last_resort) VALUES (?, ?, ?)",
      id.toLong(),
      seal(record.serialize(), "kyber_prekeys:$id"),
      if (lastResort) 1L else 0L,
    )
  }

  fun loadKyberPreKey(id: Int): KyberPreKeyRecord {
    val row = db.query("SELECT record FROM kyber_prekeys WHERE id = ?", id.toLong()).firstOrNull()
      ?: throw invalidMessage("unknown Kyber prekey $id")
    return KyberPreKeyRecord(open(row["record"] as ByteArray, "kyber_prekeys:$id"))
  }

  fun kyberPreKeys(): List<KyberPreKeyRecord> =
    db.query("SELECT id, record FROM kyber_prekeys").map {
      KyberPreKeyRecord(open(it["record"] as ByteArray, "kyber_prekeys:${it["id"]}"))
    }

  fun hasKyberPreKey(id: Int): Boolean =
    db.query("SELECT id FROM kyber_prekeys WHERE id = ?", id.toLong()).isNotEmpty()

  /**
   * A one-time Kyber prekey is deleted once used. A last-resort one stays, but each
   * (signed prekey, base key) it was used with is remembered: seeing one again means a PreKey
   * message is being replayed (for instance after its session was deleted), and is refused.
   */
  fun markKyberPreKeyUsed(id: Int, signedPreKeyId: Int, baseKey: ByteArray) {
    val row = db.query("SELECT last_resort FROM kyber_prekeys WHERE id = ?", id.toLong()).firstOrNull()
      ?: throw invalidMessage("unknown Kyber prekey $id")
    if ((row["last_resort"] as Number).toLong() == 0L) {
      db.update("DELETE FROM kyber_prekeys WHERE id = ?", id.toLong())
      return
    }
    val inserted = db.update(
      "INSERT OR IGNORE INTO kyber_prekey_uses (kyber_id, signed_id, base_key) VALUES (?, ?, ?)",
      id.toLong(),
      signedPreKeyId.toLong(),
      baseKey,
    )
    if (inserted == 0) {
      throw EngineException(EngineErrorCode.DUPLICATE_MESSAGE, "this PreKey message was already processed")
    }
  }

  // --- sessions ---

  fun loadSession(accountId: String, deviceId: Int): SessionRecord? {
    val row = db.query(
      "SELECT record FROM sessions WHERE account_id = ? AND device_id = ?",
      accountId,
      deviceId.toLong(),
    ).firstOrNull() ?: return null
    return SessionRecord(open(row["record"] as ByteArray, "sessions:$accountId.$deviceId"))
  }

  fun saveSession(accountId: String, deviceId: Int, record: SessionRecord) {
    db.update(
      "INSERT OR REPLACE INTO sessions (account_id, device_id, record) VALUES (?, ?, ?)",
      accountId,
      deviceId.toLong(),
      seal(record.serialize(), "sessions:$accountId.$deviceId"),
    )
  }

  fun deleteSession(accountId: String, deviceId: Int) {
    db.update("DELETE FROM sessions WHERE account_id = ? AND device_id = ?", accountId, deviceId.toLong())
  }

  fun sessionDeviceIds(accountId: String): List<Int> =
    db.query("SELECT device_id FROM sessions WHERE account_id = ? ORDER BY device_id", accountId)
      .map { (it["device_id"] as Number).toInt() }

  // --- sender keys (groups): ours, with its private signing key, and each member device's ---

  private fun senderKeyContext(sender: Address, distributionId: String) =
    "sender_keys:${sender.accountId}.${sender.deviceId}/$distributionId"

  fun loadSenderKey(sender: Address, distributionId: String): SenderKeyRecord? {
    val row = db.query(
      "SELECT record FROM sender_keys WHERE account_id = ? AND device_id = ? AND distribution_id = ?",
      sender.accountId,
      sender.deviceId.toLong(),
      distributionId,
    ).firstOrNull() ?: return null
    return SenderKeyRecord(open(row["record"] as ByteArray, senderKeyContext(sender, distributionId)))
  }

  fun saveSenderKey(sender: Address, distributionId: String, record: SenderKeyRecord) {
    db.update(
      "INSERT OR REPLACE INTO sender_keys (account_id, device_id, distribution_id, record) VALUES (?, ?, ?, ?)",
      sender.accountId,
      sender.deviceId.toLong(),
      distributionId,
      seal(record.serialize(), senderKeyContext(sender, distributionId)),
    )
  }

  /** Every sender key an account's devices gave us: they go with the identity they came under. */
  fun deleteSenderKeys(accountId: String) {
    db.update("DELETE FROM sender_keys WHERE account_id = ?", accountId)
  }

  /** This device's first distribution message for one of its own distribution ids (it holds the chain's start key). */
  fun ownDistribution(distributionId: String): ByteArray? {
    val row = db.query(
      "SELECT message FROM sender_key_distributions WHERE distribution_id = ?",
      distributionId,
    ).firstOrNull() ?: return null
    return open(row["message"] as ByteArray, "sender_key_distributions:$distributionId")
  }

  fun saveOwnDistribution(distributionId: String, message: ByteArray) {
    db.update(
      "INSERT INTO sender_key_distributions (distribution_id, message) VALUES (?, ?)",
      distributionId,
      seal(message, "sender_key_distributions:$distributionId"),
    )
  }

  // --- remote identities (public keys: not sealed) ---

  fun identity(accountId: String): IdentityRow? {
    val row = db.query(
      "SELECT identity_key, verified, changed, pending_key FROM identities WHERE account_id = ?",
      accountId,
    ).firstOrNull() ?: return null
    return IdentityRow(
      row["identity_key"] as ByteArray,
      (row["verified"] as Number).toLong() != 0L,
      (row["changed"] as Number).toLong() != 0L,
      row["pending_key"] as ByteArray?,
    )
  }

  fun putIdentity(accountId: String, row: IdentityRow) {
    db.update(
      """INSERT OR REPLACE INTO identities (account_id, identity_key, verified, changed, pending_key)
         VALUES (?, ?, ?, ?, ?)""",
      accountId,
      row.identityKey,
      if (row.verified) 1L else 0L,
      if (row.changed) 1L else 0L,
      row.pendingKey,
    )
  }

  // --- decrypted envelopes (the plaintext is sealed too) ---

  fun decrypted(envelopeId: String): DecryptOutcome.Decrypted? {
    val row = db.query(
      "SELECT sender_account, sender_device, plaintext, distribution_id FROM decrypted WHERE envelope_id = ?",
      envelopeId,
    ).firstOrNull() ?: return null
    return DecryptOutcome.Decrypted(
      Address(row["sender_account"] as String, (row["sender_device"] as Number).toInt()),
      open(row["plaintext"] as ByteArray, "decrypted:$envelopeId"),
      row["distribution_id"] as String?,
    )
  }

  fun saveDecrypted(envelopeId: String, decrypted: DecryptOutcome.Decrypted) {
    db.update(
      """INSERT INTO decrypted (envelope_id, sender_account, sender_device, plaintext, distribution_id)
         VALUES (?, ?, ?, ?, ?)""",
      envelopeId,
      decrypted.sender.accountId,
      decrypted.sender.deviceId.toLong(),
      seal(decrypted.plaintext, "decrypted:$envelopeId"),
      decrypted.distributionId,
    )
  }

  fun forgetDecrypted(envelopeId: String) {
    db.update("DELETE FROM decrypted WHERE envelope_id = ?", envelopeId)
  }
}
