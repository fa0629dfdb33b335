package org.privcomm.engine.expo

import expo.modules.kotlin.exception.Exceptions
import expo.modules.kotlin.functions.Coroutine
import expo.modules.kotlin.modules.Module
import expo.modules.kotlin.modules.ModuleDefinition
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import org.privcomm.engine.EngineRequests

/**
 * The engine core (packages/engine-android/kotlin/core) exposed to JavaScript. Thin on purpose:
 * one asynchronous function carries each SignalEngine operation as a JSON request to
 * EngineRequests, the very code the JVM tests drive (the contract suite runs against it there),
 * and returns its JSON answer, engine errors included with their SignalEngine codes. The
 * TypeScript side (../../../../../../../../src/PrivcommEngine.ts) turns it back into the
 * SignalEngine interface. Private keys never cross: only public keys, ciphertexts and plaintexts.
 *
 * Every operation runs off the UI thread, on the IO dispatcher; the engine orders the
 * operations on one store itself (one SQLite transaction each).
 */
class PrivcommEngineModule : Module() {
  private val requests: EngineRequests by lazy {
    val context = appContext.reactContext ?: throw Exceptions.ReactContextLost()
    EngineRequests(
      openDatabase = { name -> AndroidSqlDatabase.open(context, name) },
      sealer = KeystoreSecretSealer(),
    )
  }

  override fun definition() = ModuleDefinition {
    Name("PrivcommEngine")

    AsyncFunction("request") Coroutine { request: String ->
      withContext(Dispatchers.IO) { requests.handle(request) }
    }

    OnDestroy { requests.closeAll() }
  }
}
