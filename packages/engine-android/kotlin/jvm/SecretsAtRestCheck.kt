package org.privcomm.engine.jvm

import org.privcomm.engine.Address
import org.privcomm.engine.DecryptOutcome
import org.privcomm.engine.RemoteBundle
import org.privcomm.engine.SecretSealer
import org.privcomm.engine.Json
import org.privcomm.engine.SignalEngineCore
import org.signal.libsignal.protocol.IdentityKeyPair
import org.signal.libsignal.protocol.message.SenderKeyDistributionMessage
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.PreKeyRecord
import org.signal.libsignal.protocol.state.SignedPreKeyRecord
import java.io.File
import java.util.UUID

/**
 * FOR TESTS (test-jvm/secrets-at-rest.test.ts): fills a store file with every kind of private
 * record (identity key, certificate keys, provisioning key, one-time, signed and Kyber prekeys,
 * a session, sender keys, decrypted plaintexts), then looks for those secrets in the file's raw
 * bytes.
 * Prints {"secrets": <how many were looked for>, "found": [<names of those in the file>]}.
 *
 * Usage: SecretsAtRestCheckKt <store file> sealed|unsealed. "unsealed" stores the records as
 * they are (PlainRecords): the control showing that the search finds what is there.
 */
fun main(args: Array<String>) {
  val file = args[0]
  val sealer: SecretSealer = if (args[1] == "sealed") TestOnlySecretSealer() else PlainRecords
  val marker = "a private message 5c1e".toByteArray()

  val bob = SignalEngineCore.open(JdbcSqlDatabase.open(file), sealer)
  val alice = SignalEngineCore.open(JdbcSqlDatabase.open(":memory:"), TestOnlySecretSealer())
  val bobAddress = Address(UUID.randomUUID().toString(), 1)
  val aliceAddress = Address(UUID.randomUUID().toString(), 1)
  val bobIdentity = bob.createIdentity()
  bob.setLocalAddress(bobAddress)
  alice.createIdentity()
  alice.setLocalAddress(aliceAddress)
  bob.generatePreKeys(5)
  bob.generateKyberLastResortPreKey()
  val bundle = RemoteBundle(
    bobIdentity.identityKey,
    bobAddress.deviceId,
    bobIdentity.registrationId,
    bob.generateSignedPreKey(),
    bob.generatePreKeys(1).first(),
    bob.generateKyberPreKeys(2).first(),
  )
  alice.processBundle(bobAddress, bundle)
  val first = alice.encrypt(bobAddress, marker)
  val received = bob.decrypt("00000000-0000-4000-8000-000000000001", first.type, first.content, false, null)
  check(received is DecryptOutcome.Decrypted && received.plaintext.contentEquals(marker))
  val reply = bob.encrypt(aliceAddress, "reply".toByteArray())
  alice.decrypt("00000000-0000-4000-8000-000000000002", reply.type, reply.content, false, null)
  // Groups: Bob's own sender key (with its private signing key) and Alice's, given to him, and
  // a group message from her. Each device's share is the whole multi-recipient message here
  // (one recipient): the relay's split keeps only what the recipient needs.
  val distributionId = UUID.randomUUID().toString()
  bob.senderKeyDistribution(UUID.randomUUID().toString())
  bob.processSenderKeyDistribution(aliceAddress, alice.senderKeyDistribution(distributionId))
  val groupMarker = "a group message 7d2a".toByteArray()
  val group = alice.groupEncrypt(distributionId, listOf(bobAddress), groupMarker)
  val groupReceived = bob.decrypt(
    "00000000-0000-4000-8000-000000000003",
    SignalEngineCore.SEALED_SENDER_V2,
    singleRecipientShare(group.content),
    false,
    null,
  )
  check(groupReceived is DecryptOutcome.Decrypted && groupReceived.plaintext.contentEquals(groupMarker))
  bob.createProvisioningKey()
  bob.close()
  alice.close()

  // The secrets, read back through the sealer.
  val secrets = mutableMapOf<String, ByteArray>("plaintext" to marker, "group plaintext" to groupMarker)
  val db = JdbcSqlDatabase.open(file)
  fun meta(key: String) =
    sealer.open(db.query("SELECT value FROM meta WHERE key = ?", key).first()["value"] as ByteArray, "meta:$key")
  secrets["identity private key"] = IdentityKeyPair(meta("identity_key_pair")).privateKey.serialize()
  for (key in listOf("trust_root", "server_key", "provisioning_key")) secrets[key] = meta(key)
  fun records(table: String) =
    db.query("SELECT * FROM $table").map { it to sealer.open(it["record"] as ByteArray, "$table:${it["id"]}") }
  for ((row, record) in records("prekeys")) {
    secrets["prekey ${row["id"]}"] = PreKeyRecord(record).keyPair.privateKey.serialize()
  }
  for ((row, record) in records("signed_prekeys")) {
    secrets["signed prekey ${row["id"]}"] = SignedPreKeyRecord(record).keyPair.privateKey.serialize()
  }
  for ((row, record) in records("kyber_prekeys")) {
    secrets["Kyber prekey ${row["id"]}"] = KyberPreKeyRecord(record).keyPair.secretKey.serialize()
  }
  for (row in db.query("SELECT * FROM sessions")) {
    val context = "sessions:${row["account_id"]}.${row["device_id"]}"
    secrets["session with ${row["account_id"]}"] = sealer.open(row["record"] as ByteArray, context)
  }
  for (row in db.query("SELECT * FROM sender_keys")) {
    val name = "${row["account_id"]}.${row["device_id"]}/${row["distribution_id"]}"
    val record = sealer.open(row["record"] as ByteArray, "sender_keys:$name")
    val sender = if (row["account_id"] == bobAddress.accountId) "own" else "received"
    for ((i, state) in SenderKeyRecordFields.states(record).withIndex()) {
      secrets["$sender sender chain key $i"] = state.chainKey
      state.privateSigningKey?.let { secrets["$sender sender signing key $i"] = it }
    }
  }
  for (row in db.query("SELECT * FROM sender_key_distributions")) {
    val message = sealer.open(row["message"] as ByteArray, "sender_key_distributions:${row["distribution_id"]}")
    secrets["own sender chain start"] = SenderKeyDistributionMessage(message).chainKey
  }
  db.close()

  val raw = File(file).readBytes() + (File("$file-journal").takeIf { it.exists() }?.readBytes() ?: ByteArray(0))
  // A secret is found if any of its 16-byte windows (start, middle, end) is in the file.
  val found = secrets.filter { (_, secret) ->
    listOf(0, secret.size / 2 - 8, secret.size - 16).any { offset ->
      contains(raw, secret.copyOfRange(offset, offset + 16))
    }
  }.keys.toList()
  println(Json.write(mapOf("secrets" to secrets.size, "found" to found)))
}

private fun contains(haystack: ByteArray, needle: ByteArray): Boolean {
  outer@ for (i in 0..haystack.size - needle.size) {
    for (j in needle.indices) if (haystack[i + j] != needle[j]) continue@outer
    return true
  }
  return false
}

/**
 * A multi-recipient message as its one recipient receives it. Java's libsignal exposes the
 * relay's split only as this package-private test helper, hence reflection.
 */
private fun singleRecipientShare(message: ByteArray): ByteArray {
  val method = org.signal.libsignal.metadata.SealedSessionCipher::class.java
    .getDeclaredMethod("multiRecipientMessageForSingleRecipient", ByteArray::class.java)
  method.isAccessible = true
  return method.invoke(null, message) as ByteArray
}

/**
 * The secret fields of a serialized SenderKeyRecord (libsignal's storage protobuf, which the
 * Java API does not expose): per state, the chain key seed and, for our own key, the private
 * signing key. SenderKeyRecordStructure { repeated SenderKeyStateStructure states = 1 };
 * SenderKeyStateStructure { sender_chain_key = 2 { seed = 2 }, sender_signing_key = 3
 * { private = 2 } }.
 */
private object SenderKeyRecordFields {
  class State(val chainKey: ByteArray, val privateSigningKey: ByteArray?)

  fun states(record: ByteArray): List<State> =
    fields(record).filter { it.first == 1 }.map { (_, state) ->
      val stateFields = fields(state)
      val chain = fields(stateFields.single { it.first == 2 }.second).single { it.first == 2 }.second
      val signing = fields(stateFields.single { it.first == 3 }.second).firstOrNull { it.first == 2 }?.second
      State(chain, signing)
    }

  /** The length-delimited fields of one protobuf message (others are skipped), in order. */
  private fun fields(bytes: ByteArray): List<Pair<Int, ByteArray>> {
    val out = mutableListOf<Pair<Int, ByteArray>>()
    var at = 0
    fun varint(): Long {
      var value = 0L
      var shift = 0
      while (true) {
        val b = bytes[at++].toInt() and 0xff
        value = value or ((b and 0x7f).toLong() shl shift)
        if (b < 0x80) return value
        shift += 7
      }
    }
    while (at < bytes.size) {
      val key = varint()
      when ((key and 7).toInt()) {
        0 -> varint()
        2 -> {
          val length = varint().toInt()
          out.add((key shr 3).toInt() to bytes.copyOfRange(at, at + length))
          at += length
        }
        5 -> at += 4
        1 -> at += 8
        else -> throw IllegalStateException("unexpected protobuf wire type in a sender key record")
      }
    }
    return out
  }
}

/** FOR THE CONTROL RUN ONLY: stores records as they are, as a store without sealing would. */
private object PlainRecords : SecretSealer {
  override fun seal(plaintext: ByteArray, context: String) = plaintext

  override fun open(sealed: ByteArray, context: String) = sealed
}
