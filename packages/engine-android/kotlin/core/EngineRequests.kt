package org.privcomm.engine

import java.util.Base64

/**
 * The engine's operations as JSON requests: how JavaScript reaches the Kotlin core, on a phone
 * (the Expo module passes each request through) and in the tests (jvm/BridgeMain.kt passes
 * JSON lines from stdin). One request: {"id": 1, "op": "encrypt", "engine": 3, "args": {...}};
 * one answer: {"id": 1, "result": ...} or {"id": 1, "error": {"kind": "engine", "code": ...}}.
 * Bytes travel as base64. The TypeScript side is packages/engine-android/src/remote-engine.ts.
 *
 * Failures: an EngineException keeps its code (and account id); a bad argument is
 * {"kind": "argument"}; anything else {"kind": "internal"}.
 */
class EngineRequests(
  /** Opens the database named in an "open" request (a file path on the JVM, a name on Android). */
  private val openDatabase: (String) -> SqlDatabase,
  private val sealer: SecretSealer,
  /** Tests only: lets "open" fix an engine's clock and "setClock" move it. */
  private val testClocks: Boolean = false,
) {
  private val engines = mutableMapOf<Long, SignalEngineCore>()
  private val clocks = mutableMapOf<Long, (Long) -> Unit>()
  private var nextHandle = 1L

  @Synchronized
  fun closeAll() {
    engines.values.forEach { it.close() }
    engines.clear()
  }

  /** Serves one request; never throws. Engines are independent: each orders its own operations. */
  fun handle(request: String): String {
    var id: Any? = null
    return try {
      val parsed = Json.parse(request) as? Map<*, *> ?: throw IllegalArgumentException("a request is a JSON object")
      id = parsed["id"]
      val args = Args(parsed["args"] as? Map<*, *> ?: emptyMap<String, Any?>())
      val op = parsed["op"] as? String ?: throw IllegalArgumentException("op is missing")
      val result = if (op == "open") open(args) else operation(op, engine(parsed["engine"] as? Long), parsed, args)
      Json.write(mapOf("id" to id, "result" to if (result == Unit) null else result))
    } catch (error: NoSenderKeyException) {
      // The caller asks this sender device for its key: it needs the device and distribution id.
      val failure = mapOf(
        "kind" to "engine",
        "code" to error.code.name,
        "message" to error.message,
        "accountId" to error.sender.accountId,
        "deviceId" to error.sender.deviceId,
        "distributionId" to error.distributionId,
      )
      Json.write(mapOf("id" to id, "error" to failure))
    } catch (error: EngineException) {
      val failure = mapOf("kind" to "engine", "code" to error.code.name, "message" to error.message, "accountId" to error.accountId)
      Json.write(mapOf("id" to id, "error" to failure))
    } catch (error: IllegalArgumentException) {
      Json.write(mapOf("id" to id, "error" to mapOf("kind" to "argument", "message" to error.message)))
    } catch (error: Throwable) {
      Json.write(mapOf("id" to id, "error" to mapOf("kind" to "internal", "message" to error.toString())))
    }
  }

  @Synchronized
  private fun engine(handle: Long?): SignalEngineCore =
    engines[handle] ?: throw IllegalStateException("the engine is closed")

  @Synchronized
  private fun open(args: Args): Long {
    val handle = nextHandle++
    val fixed = args.optionalLong("now")
    val clock: () -> Long =
      if (fixed == null) {
        System::currentTimeMillis
      } else {
        require(testClocks) { "a fixed clock is for tests only" }
        var now: Long = fixed
        clocks[handle] = { value -> now = value }
        { now }
      }
    engines[handle] = SignalEngineCore.open(openDatabase(args.string("file")), sealer, clock)
    return handle
  }

  private fun operation(op: String, engine: SignalEngineCore, request: Map<*, *>, args: Args): Any? =
    when (op) {
      "close" -> {
        synchronized(this) {
          engines.values.remove(engine)
          clocks.remove(request["engine"] as Long)
        }
        engine.close()
      }
      "wipe" -> {
        synchronized(this) {
          engines.values.remove(engine)
          clocks.remove(request["engine"] as Long)
        }
        engine.wipe()
      }
      "setClock" -> (clocks[request["engine"] as Long] ?: throw IllegalArgumentException("no fixed clock"))(args.long("now"))
      "createIdentity" -> engine.createIdentity().let { identity(it) }
      "localIdentity" -> engine.localIdentity()?.let { identity(it) }
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
        val outcome = engine.decrypt(
          args.string("envelopeId"),
          args.int("type"),
          args.bytes("content"),
          args.boolean("confirming"),
          answer,
        )
        when (outcome) {
          is DecryptOutcome.Decrypted -> mapOf(
            "sender" to address(outcome.sender),
            "plaintext" to bytes(outcome.plaintext),
            "distributionId" to outcome.distributionId,
          )
          is DecryptOutcome.NeedsConfirmation -> mapOf(
            "confirm" to mapOf("accountId" to outcome.accountId, "identityKey" to bytes(outcome.identityKey)),
          )
        }
      }
      "forgetDecrypted" -> engine.forgetDecrypted(args.string("envelopeId"))
      "senderKeyDistribution" -> bytes(engine.senderKeyDistribution(args.string("distributionId")))
      "processSenderKeyDistribution" ->
        engine.processSenderKeyDistribution(args.address("sender"), args.bytes("message"))
      "groupEncrypt" ->
        engine.groupEncrypt(args.string("distributionId"), args.addresses("recipients"), args.bytes("plaintext")).let {
          mapOf(
            "type" to it.type,
            "content" to bytes(it.content),
            "recipients" to it.recipients.map { device ->
              mapOf("address" to address(device.address), "registrationId" to device.registrationId)
            },
          )
        }
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
    }

  private fun address(address: Address) = mapOf("accountId" to address.accountId, "deviceId" to address.deviceId)

  private fun identity(identity: LocalIdentity) =
    mapOf("identityKey" to bytes(identity.identityKey), "registrationId" to identity.registrationId)

  private fun preKey(key: PublicPreKey) = mapOf("keyId" to key.keyId, "publicKey" to bytes(key.publicKey))

  private fun signedPreKey(key: PublicSignedPreKey) =
    mapOf("keyId" to key.keyId, "publicKey" to bytes(key.publicKey), "signature" to bytes(key.signature))
}

private fun bytes(value: ByteArray): String = Base64.getEncoder().encodeToString(value)

/** Typed access to a request's arguments; a missing or mistyped one is an argument error. */
private class Args(private val values: Map<*, *>) {
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
      Base64.getDecoder().decode(string(name))
    } catch (error: IllegalArgumentException) {
      throw IllegalArgumentException("$name is not base64")
    }

  fun optional(name: String): Args? = (values[name] as? Map<*, *>)?.let(::Args)

  private fun nested(name: String) = optional(name) ?: throw IllegalArgumentException("$name is missing")

  fun address(name: String) = addressOf(nested(name))

  fun addresses(name: String): List<Address> {
    val list = values[name] as? List<*> ?: throw IllegalArgumentException("$name is not a list")
    return list.map { addressOf(Args(it as? Map<*, *> ?: throw IllegalArgumentException("each of $name is an address"))) }
  }

  private fun addressOf(args: Args) = Address(args.string("accountId"), args.int("deviceId"))

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
