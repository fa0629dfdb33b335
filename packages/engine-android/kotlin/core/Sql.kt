package org.privcomm.engine

/**
 * The little SQL the protocol store needs, one implementation per platform: sqlite-jdbc on the
 * JVM (tests, jvm/JdbcSqlDatabase.kt) and android.database.sqlite on a phone (the Expo module).
 * Values are Long, String, ByteArray or null, as SQLite stores them.
 */
interface SqlDatabase {
  /** Runs a statement that returns no rows; returns the number of rows it changed. */
  fun update(sql: String, vararg args: Any?): Int

  /** Runs a query; each row maps column names to values (Long, String, ByteArray or null). */
  fun query(sql: String, vararg args: Any?): List<Map<String, Any?>>

  /** Runs `block` in one immediate (write-locking) transaction: all of it commits, or none. */
  fun <T> transaction(block: () -> T): T

  fun close()
}

/**
 * The schema of the protocol store; the same tables as the Node engine's (engine-node/src/sqlite.ts).
 * STEPS[i] takes a store from version i to i + 1: a new store runs them all, an older one the
 * rest (a phone keeps its store across app updates).
 */
object StoreSchema {
  val STEPS: List<List<String>> = listOf(
    // 0 -> 1: the pairwise engine.
    listOf(
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
      "CREATE TABLE prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL)",
      "CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL)",
      "CREATE TABLE kyber_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL, last_resort INTEGER NOT NULL)",
      // Uses of last-resort Kyber prekeys, so that a replayed PreKey message cannot rebuild a session.
      """CREATE TABLE kyber_prekey_uses (kyber_id INTEGER NOT NULL, signed_id INTEGER NOT NULL,
         base_key BLOB NOT NULL, PRIMARY KEY (kyber_id, signed_id, base_key)) WITHOUT ROWID""",
      """CREATE TABLE sessions (account_id TEXT NOT NULL, device_id INTEGER NOT NULL,
         record BLOB NOT NULL, PRIMARY KEY (account_id, device_id)) WITHOUT ROWID""",
      """CREATE TABLE identities (account_id TEXT PRIMARY KEY, identity_key BLOB NOT NULL,
         verified INTEGER NOT NULL, changed INTEGER NOT NULL, pending_key BLOB) WITHOUT ROWID""",
      """CREATE TABLE decrypted (envelope_id TEXT PRIMARY KEY, sender_account TEXT NOT NULL,
         sender_device INTEGER NOT NULL, plaintext BLOB NOT NULL) WITHOUT ROWID""",
    ),
    // 1 -> 2: groups. Sender keys (this device's own under its own address, and the ones other
    // devices sent it pairwise), this device's first distribution message of each of its own
    // distribution ids (see SignalEngineCore.senderKeyDistribution), and the distribution id of
    // a decrypted group message, so that decrypting it again says so too.
    listOf(
      """CREATE TABLE sender_keys (account_id TEXT NOT NULL, device_id INTEGER NOT NULL,
         distribution_id TEXT NOT NULL, record BLOB NOT NULL,
         PRIMARY KEY (account_id, device_id, distribution_id)) WITHOUT ROWID""",
      """CREATE TABLE sender_key_distributions (distribution_id TEXT PRIMARY KEY,
         message BLOB NOT NULL) WITHOUT ROWID""",
      "ALTER TABLE decrypted ADD COLUMN distribution_id TEXT",
    ),
  )

  val VERSION = STEPS.size
}
