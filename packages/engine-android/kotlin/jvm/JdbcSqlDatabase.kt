package org.privcomm.engine.jvm

import org.privcomm.engine.SqlDatabase
import java.io.File
import java.nio.file.Files
import java.nio.file.attribute.PosixFilePermissions
import java.sql.Connection
import java.sql.DriverManager
import java.sql.PreparedStatement

/**
 * The SqlDatabase over sqlite-jdbc, for the JVM (tests). The same pragmas as the Node engine:
 * a rollback journal (no WAL files), full sync, and secure_delete so that deleted prekeys and
 * plaintexts are overwritten rather than left in free pages.
 */
class JdbcSqlDatabase private constructor(private val connection: Connection) : SqlDatabase {
  companion object {
    /** Opens `file` (created with mode 0600 if missing), or a throwaway store for ":memory:". */
    fun open(file: String): JdbcSqlDatabase {
      if (file != ":memory:") {
        val path = File(file).toPath()
        if (!Files.exists(path)) Files.createFile(path)
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"))
      }
      val connection = DriverManager.getConnection("jdbc:sqlite:$file")
      connection.createStatement().use {
        it.execute("PRAGMA journal_mode = DELETE")
        it.execute("PRAGMA synchronous = FULL")
        it.execute("PRAGMA secure_delete = ON")
        it.execute("PRAGMA busy_timeout = 5000")
      }
      return JdbcSqlDatabase(connection)
    }
  }

  private fun prepare(sql: String, args: Array<out Any?>): PreparedStatement {
    val statement = connection.prepareStatement(sql)
    args.forEachIndexed { i, value ->
      when (value) {
        null -> statement.setNull(i + 1, java.sql.Types.NULL)
        is Long -> statement.setLong(i + 1, value)
        is Int -> statement.setLong(i + 1, value.toLong())
        is String -> statement.setString(i + 1, value)
        is ByteArray -> statement.setBytes(i + 1, value)
        else -> throw IllegalArgumentException("unsupported SQL value ${value::class}")
      }
    }
    return statement
  }

  override fun update(sql: String, vararg args: Any?): Int = prepare(sql, args).use { it.executeUpdate() }

  override fun query(sql: String, vararg args: Any?): List<Map<String, Any?>> =
    prepare(sql, args).use { statement ->
      statement.executeQuery().use { rows ->
        val columns = (1..rows.metaData.columnCount).map { rows.metaData.getColumnLabel(it) }
        val result = mutableListOf<Map<String, Any?>>()
        while (rows.next()) {
          result.add(
            columns.mapIndexed { i, name ->
              name to when (val value = rows.getObject(i + 1)) {
                is Int -> value.toLong()
                else -> value
              }
            }.toMap(),
          )
        }
        result
      }
    }

  override fun <T> transaction(block: () -> T): T {
    connection.createStatement().use { it.execute("BEGIN IMMEDIATE") }
    val value =
      try {
        block()
      } catch (error: Throwable) {
        connection.createStatement().use { it.execute("ROLLBACK") }
        throw error
      }
    connection.createStatement().use { it.execute("COMMIT") }
    return value
  }

  override fun close() = connection.close()
}
