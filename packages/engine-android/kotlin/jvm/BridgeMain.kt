package org.privcomm.engine.jvm

import org.privcomm.engine.Address
import org.privcomm.engine.DecryptOutcome
import org.privcomm.engine.EngineException
import org.privcomm.engine.IdentityConfirmation
import org.privcomm.engine.Libsignal
import org.privcomm.engine.PublicPreKey
import org.privcomm.engine.PublicSignedPreKey
import org.privcomm.engine.RemoteBundle
import org.privcomm.engine.SignalEngineCore
import java.io.BufferedReader
import java.io.InputStreamReader
import java.io.PrintStream
import java.util.Base64

/**
 * The JVM bridge, FOR TESTS: serves SignalEngineCore over JSON lines on stdin/stdout, so that
 * the TypeScript contract suite runs against the Kotlin engine (packages/engine-android/src).
 * One request per line: {"id": 1, "op": "encrypt", "engine": 3, "args": {...}}; one answer per
 * line: {"id": 1, "result": ...} or {"id": 1, "error": {"kind": "engine", "code": ..., ...}}.
 * Bytes travel as base64. Requests are served one at a time, in order.
 *
 * The records are sealed with TestOnlySecretSealer under a key made at start-up: stores
 * outlive an engine's close within one bridge process, not the process.
 */
fun main() {
  val out = PrintStream(System.out, false, "UTF-8")
  // Nothing else may write to stdout: it carries the protocol.
  System.setOut(System.err)
  val bridge = Bridge(TestOnlySecretSealer())
  out.println(Json.write(mapOf("ready" to true, "libsignal" to Libsignal.VERSION)))
  out.flush()
  val input = BufferedReader(InputStreamReader(System.`in`, Charsets.UTF_8))
  while (true) {
    val line = input.readLine() ?: break
    if (line.isBlank()) continue
    out.println(bridge.handle(line))
    out.flush()
  }
  bridge.closeAll()
}

private val base64 = Base64.getEncoder()
private val unbase64 = Base64.getDecoder()

private fun bytes(value: ByteArray) = base64.encodeToString(value)

class Bridge(private val sealer: TestOnlySecretSealer) {
  private val engines = mutableMapOf<Long, SignalEngineCore>()
  private var nextHandle = 1L

  fun closeAll() {
    engines.values.forEach { it.close() }
    engines.clear()
  }

  fun handle(line: String): String {
    var id: Any? = null
    return try {
      val request = Json.parse(line) as Map<*, *>
      id = request["id"]
      val args = (request["args"] as Map<*, *>?) ?: emptyMap<String, Any?>()
      val result = dispatch(request["op"] as String, request["engine"] as Long?, Args(args))
      Json.write(mapOf("id" to id, "result" to result))
    } catch (error: EngineException) {
      Json.write(
        mapOf(
          "id" to id,
          "error" to mapOf(
            "kind" to "engine",
            "code" to error.code.name,
            "message" to error.message,
            "accountId" to error.accountId,
          ),
        ),
      )
    } catch (error: IllegalArgumentException) {
      Json.write(mapOf("id" to id, "error" to mapOf("kind" to "argument", "message" to error.message)))
    } catch (error: Throwable) {
      Json.write(mapOf("id" to id, "error" to mapOf("kind" to "internal", "message" to error.toString())))
    }
  }

  private fun dispatch(op: String, handle: Long?, args: Args): Any? {
    if (op == "open") {
      val engine = SignalEngineCore.open(JdbcSqlDatabase.open(args.string("file")), sealer, clockFor(args))
      val opened = nextHandle++
      engines[opened] = engine
      return opened
    }
    val engine = engines[handle] ?: throw IllegalStateException("the engine is closed")
    return when (op) {
      "close" -> {
        engines.remove(handle)
        engine.close()
        null
      }
      "setClock" -> setClock(handle!!, args.long("now"))
      "createIdentity" -> engine.createIdentity().let { identity(it.identityKey, it.registrationId) }
      "localIdentity" -> engine.localIdentity()?.let { identity(it.identityKey, it.registrationId) }
      "setLocalAddress" -> engine.setLocalAddress(args.address("address"))
      "generatePreKeys" -> engine.generatePreKeys(args.int("count")).map(::preKey)
      "generateKyberPreKeys" -> engine.generateKyberPreKeys(args.int("count")).map(::signedPreKey)
      "generateSignedPreKey" -> signedPreKey(engine.generateSignedPreKey())
      "generateKyberLastResortPreKey" -> signedPreKey(engine.generateKyberLastResortPreKey())
      "processBundle" -> engine.processBundle(args.address("address"), args.bundle("bundle"))
      "hasSession" -> engine.hasSession(args.address("address"))
      "sessionDeviceIds" -> engine.sessionDeviceIds(args.string("accountId"))
      "deleteSession" -> engine.deleteSession(args.address("address"))
      "encrypt" -> engine.encrypt(args.address("address"), args.bytes("plaintext")).let {
        mapOf("type" to it.type, "content" to bytes(it.content), "registrationId" to it.registrationId)
      }
      "decrypt" -> {
        val answer = args.optional("answer")?.let {
          IdentityConfirmation(it.string("accountId"), it.bytes("identityKey"), it.boolean("confirmed"))
        }
        when (
          val outcome = engine.decrypt(
            args.string("envelopeId"),
            args.int("type"),
            args.bytes("content"),
            args.boolean("confirming"),
            answer,
          )
        ) {
          is DecryptOutcome.Decrypted -> mapOf(
            "sender" to mapOf("accountId" to outcome.sender.accountId, "deviceId" to outcome.sender.deviceId),
            "plaintext" to bytes(outcome.plaintext),
          )
          is DecryptOutcome.NeedsConfirmation -> mapOf(
            "confirm" to mapOf("accountId" to outcome.accountId, "identityKey" to bytes(outcome.identityKey)),
          )
        }
      }
      "forgetDecrypted" -> engine.forgetDecrypted(args.string("envelopeId"))
      "identityState" -> engine.identityState(args.string("accountId"))?.let {
        mapOf(
          "identityKey" to bytes(it.identityKey),
          "verified" to it.verified,
          "changed" to it.changed,
          "pendingIdentityKey" to it.pendingIdentityKey?.let(::bytes),
        )
      }
      "setVerified" -> engine.setVerified(args.string("accountId"), args.boolean("verified"))
      "acceptIdentity" -> engine.acceptIdentity(args.string("accountId"))
      "safetyNumber" -> engine.safetyNumber(args.string("accountId")).let {
        mapOf("digits" to it.digits, "scannable" to bytes(it.scannable))
      }
      "createProvisioningKey" -> bytes(engine.createProvisioningKey())
      "sealProvisioning" -> bytes(engine.sealProvisioning(args.bytes("recipientKey"), args.bytes("payload")))
      "openProvisioning" -> bytes(engine.openProvisioning(args.bytes("ciphertext")))
      else -> throw IllegalArgumentException("unknown operation $op")
    }.let { if (it == Unit) null else it }
  }

  /** A fixed clock for tests that move time (args.now, milliseconds), else the system clock. */
  private fun clockFor(args: Args): () -> Long {
    val fixed = args.optionalLong("now") ?: return System::currentTimeMillis
    var now = fixed
    clocks[nextHandle] = { value -> now = value }
    return { now }
  }

  /** Setters of the fixed clocks, by engine handle. */
  private val clocks = mutableMapOf<Long, (Long) -> Unit>()

  private fun identity(key: ByteArray, registrationId: Int) =
    mapOf("identityKey" to bytes(key), "registrationId" to registrationId)

  private fun preKey(key: PublicPreKey) = mapOf("keyId" to key.keyId, "publicKey" to bytes(key.publicKey))

  private fun signedPreKey(key: PublicSignedPreKey) =
    mapOf("keyId" to key.keyId, "publicKey" to bytes(key.publicKey), "signature" to bytes(key.signature))

  fun setClock(handle: Long, now: Long) {
    (clocks[handle] ?: throw IllegalArgumentException("engine $handle has no fixed clock"))(now)
  }
}

/** Typed access to a request's arguments; a missing or mistyped one is an argument error. */
class Args(private val values: Map<*, *>) {
  private fun value(name: String): Any = values[name] ?: throw IllegalArgumentException("$name is missing")

  fun string(name: String) = value(name) as? String ?: throw IllegalArgumentException("$name is not a string")

  fun long(name: String) = value(name) as? Long ?: throw IllegalArgumentException("$name is not an integer")

  fun int(name: String): Int {
    val value = long(name)
    require(value in Int.MIN_VALUE..Int.MAX_VALUE) { "$name is out of range" }
    return value.toInt()
  }

  fun optionalLong(name: String): Long? = values[name]?.let { long(name) }

  fun boolean(name: String) = value(name) as? Boolean ?: throw IllegalArgumentException("$name is not a boolean")

  fun bytes(name: String): ByteArray =
    try {
      unbase64.decode(string(name))
    } catch (error: IllegalArgumentException) {
      throw IllegalArgumentException("$name is not base64")
    }

  fun optional(name: String): Args? = (values[name] as Map<*, *>?)?.let(::Args)

  private fun nested(name: String) = optional(name) ?: throw IllegalArgumentException("$name is missing")

  fun address(name: String) = nested(name).let { Address(it.string("accountId"), it.int("deviceId")) }

  private fun preKey(args: Args) = PublicPreKey(args.int("keyId"), args.bytes("publicKey"))

  private fun signedPreKey(args: Args) =
    PublicSignedPreKey(args.int("keyId"), args.bytes("publicKey"), args.bytes("signature"))

  fun bundle(name: String): RemoteBundle {
    val bundle = nested(name)
    return RemoteBundle(
      bundle.bytes("identityKey"),
      bundle.int("deviceId"),
      bundle.int("registrationId"),
      signedPreKey(bundle.nested("signedPreKey")),
      bundle.optional("preKey")?.let(::preKey),
      signedPreKey(bundle.nested("kyberPreKey")),
    )
  }
}
