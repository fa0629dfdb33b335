package org.privcomm.engine.expo

import android.content.Context
import android.database.Cursor
import android.database.sqlite.SQLiteCursor
import android.database.sqlite.SQLiteDatabase
import android.database.sqlite.SQLiteProgram
import org.privcomm.engine.SqlDatabase

/**
 * The engine core's SqlDatabase over Android's own SQLite. The same pragmas as on the JVM and in
 * the Node engine: a rollback journal (no WAL files), full sync, secure_delete so that deleted
 * prekeys and plaintexts are overwritten rather than left in free pages.
 */
class AndroidSqlDatabase private constructor(private val db: SQLiteDatabase) : SqlDatabase {
  companion object {
    private val NAME = Regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")

    /** Opens the database `name` in the app's private database folder (":memory:": a throwaway one). */
    fun open(context: Context, name: String): AndroidSqlDatabase {
      val db =
        if (name == ":memory:") {
          SQLiteDatabase.create(null)
        } else {
          require(NAME.matches(name)) { "database name $name is not a plain file name" }
          val file = context.getDatabasePath(name)
          file.parentFile?.mkdirs()
          SQLiteDatabase.openOrCreateDatabase(file, null)
        }
      db.disableWriteAheadLogging()
      for (pragma in listOf("journal_mode = DELETE", "synchronous = FULL", "secure_delete = ON")) {
        db.rawQuery("PRAGMA $pragma", null).use { it.moveToFirst() }
      }
      return AndroidSqlDatabase(db)
    }

    private fun bind(program: SQLiteProgram, args: Array<out Any?>) {
      args.forEachIndexed { i, value ->
        when (value) {
          null -> program.bindNull(i + 1)
          is Long -> program.bindLong(i + 1, value)
          is Int -> program.bindLong(i + 1, value.toLong())
          is String -> program.bindString(i + 1, value)
          is ByteArray -> program.bindBlob(i + 1, value)
          else -> throw IllegalArgumentException("unsupported SQL value ${value::class}")
        }
      }
    }
  }

  override fun update(sql: String, vararg args: Any?): Int {
    val statement = db.compileStatement(sql)
    return statement.use {
      bind(it, args)
      // Data changes report their row count; schema statements and pragmas change no rows.
      if (sql.trimStart().take(6).uppercase() in setOf("INSERT", "UPDATE", "DELETE")) {
        it.executeUpdateDelete()
      } else {
        it.execute()
        0
      }
    }
  }

  override fun query(sql: String, vararg args: Any?): List<Map<String, Any?>> {
    // rawQuery binds strings only; a cursor factory binds blobs and integers as they are.
    val factory = SQLiteDatabase.CursorFactory { _, driver, editTable, program ->
      bind(program, args)
      SQLiteCursor(driver, editTable, program)
    }
    return db.rawQueryWithFactory(factory, sql, null, null).use { cursor ->
      val rows = mutableListOf<Map<String, Any?>>()
      while (cursor.moveToNext()) {
        rows.add(
          cursor.columnNames.indices.associate { i ->
            cursor.columnNames[i] to when (cursor.getType(i)) {
              Cursor.FIELD_TYPE_NULL -> null
              Cursor.FIELD_TYPE_INTEGER -> cursor.getLong(i)
              Cursor.FIELD_TYPE_FLOAT -> cursor.getDouble(i)
              Cursor.FIELD_TYPE_BLOB -> cursor.getBlob(i)
              else -> cursor.getString(i)
            }
          },
        )
      }
      rows
    }
  }

  override fun <T> transaction(block: () -> T): T {
    // BEGIN IMMEDIATE: the write lock from the start, as on the JVM.
    db.beginTransactionNonExclusive()
    try {
      val value = block()
      db.setTransactionSuccessful()
      return value
    } finally {
      db.endTransaction()
    }
  }

  override fun close() = db.close()
}
