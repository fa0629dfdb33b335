package org.privcomm.engine.jvm

import org.privcomm.engine.Address
import org.privcomm.engine.DecryptOutcome
import org.privcomm.engine.RemoteBundle
import org.privcomm.engine.SecretSealer
import org.privcomm.engine.Json
import org.privcomm.engine.SignalEngineCore
import org.signal.libsignal.protocol.IdentityKeyPair
import org.signal.libsignal.protocol.state.KyberPreKeyRecord
import org.signal.libsignal.protocol.state.PreKeyRecord
import org.signal.libsignal.protocol.state.SignedPreKeyRecord
import java.io.File
import java.util.UUID

/**
 * FOR TESTS (test-jvm/secrets-at-rest.test.ts): fills a store file with every kind of private
 * record (identity key, certificate keys, provisioning key, one-time, signed and Kyber prekeys,
 * a session, a decrypted plaintext), then looks for those secrets in the file's raw bytes.
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
  bob.createProvisioningKey()
  bob.close()
  alice.close()

  // The secrets, read back through the sealer.
  val secrets = mutableMapOf<String, ByteArray>("plaintext" to marker)
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

/** FOR THE CONTROL RUN ONLY: stores records as they are, as a store without sealing would. */
private object PlainRecords : SecretSealer {
  override fun seal(plaintext: ByteArray, context: String) = plaintext

  override fun open(sealed: ByteArray, context: String) = sealed
}
