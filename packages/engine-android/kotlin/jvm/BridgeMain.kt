package org.privcomm.engine.jvm

import org.privcomm.engine.EngineRequests
import org.privcomm.engine.Json
import org.privcomm.engine.Libsignal
import java.io.BufferedReader
import java.io.InputStreamReader
import java.io.PrintStream

/**
 * The JVM bridge, FOR TESTS: serves the engine's JSON requests (EngineRequests) as lines on
 * stdin/stdout, so that the TypeScript contract suite runs against the Kotlin core
 * (packages/engine-android/src/bridge.ts). Requests are served one at a time, in order.
 *
 * Stores are SQLite files (or ":memory:") sealed with TestOnlySecretSealer under a key made at
 * start-up: a store outlives its engine's close within one bridge process, not the process.
 */
fun main() {
  val out = PrintStream(System.out, false, "UTF-8")
  // Nothing else may write to stdout: it carries the protocol.
  System.setOut(System.err)
  val requests = EngineRequests(JdbcSqlDatabase::open, TestOnlySecretSealer(), testClocks = true)
  out.println(Json.write(mapOf("ready" to true, "libsignal" to Libsignal.VERSION)))
  out.flush()
  val input = BufferedReader(InputStreamReader(System.`in`, Charsets.UTF_8))
  while (true) {
    val line = input.readLine() ?: break
    if (line.isBlank()) continue
    out.println(requests.handle(line))
    out.flush()
  }
  requests.closeAll()
}
