package org.privcomm.engine

/**
 * Just enough JSON for EngineRequests (no JSON library is shared by the JVM and Android builds):
 * objects, arrays, strings, numbers, booleans and null.
 */
object Json {
  fun parse(text: String): Any? {
    val parser = Parser(text)
    val value = parser.value()
    parser.skipSpace()
    require(parser.at == text.length) { "trailing characters in JSON" }
    return value
  }

  fun write(value: Any?): String = StringBuilder().also { write(value, it) }.toString()

  private fun write(value: Any?, out: StringBuilder) {
    when (value) {
      null -> out.append("null")
      is Boolean, is Int, is Long -> out.append(value.toString())
      is String -> string(value, out)
      is Map<*, *> -> {
        out.append('{')
        var first = true
        for ((key, item) in value) {
          if (!first) out.append(',')
          first = false
          string(key as String, out)
          out.append(':')
          write(item, out)
        }
        out.append('}')
      }
      is List<*> -> {
        out.append('[')
        value.forEachIndexed { i, item ->
          if (i > 0) out.append(',')
          write(item, out)
        }
        out.append(']')
      }
      else -> throw IllegalArgumentException("cannot write ${value::class} as JSON")
    }
  }

  private fun string(value: String, out: StringBuilder) {
    out.append('"')
    for (c in value) {
      when {
        c == '"' -> out.append("\\\"")
        c == '\\' -> out.append("\\\\")
        c < ' ' -> out.append("\\u%04x".format(c.code))
        else -> out.append(c)
      }
    }
    out.append('"')
  }

  private class Parser(val text: String) {
    var at = 0

    fun skipSpace() {
      while (at < text.length && text[at].isWhitespace()) at++
    }

    fun value(): Any? {
      skipSpace()
      require(at < text.length) { "unexpected end of JSON" }
      return when (val c = text[at]) {
        '{' -> obj()
        '[' -> array()
        '"' -> string()
        't' -> literal("true", true)
        'f' -> literal("false", false)
        'n' -> literal("null", null)
        else -> if (c == '-' || c.isDigit()) number() else throw IllegalArgumentException("unexpected '$c' in JSON")
      }
    }

    private fun literal(word: String, value: Any?): Any? {
      require(text.startsWith(word, at)) { "bad JSON literal" }
      at += word.length
      return value
    }

    private fun number(): Any {
      val start = at
      while (at < text.length && (text[at].isDigit() || text[at] in "+-.eE")) at++
      val raw = text.substring(start, at)
      return raw.toLongOrNull() ?: raw.toDouble()
    }

    private fun string(): String {
      at++ // opening quote
      val out = StringBuilder()
      while (true) {
        require(at < text.length) { "unterminated JSON string" }
        val c = text[at++]
        when (c) {
          '"' -> return out.toString()
          '\\' -> {
            when (val e = text[at++]) {
              'n' -> out.append('\n')
              't' -> out.append('\t')
              'r' -> out.append('\r')
              'b' -> out.append('\b')
              'f' -> out.append('\u000c')
              'u' -> {
                out.append(text.substring(at, at + 4).toInt(16).toChar())
                at += 4
              }
              else -> out.append(e)
            }
          }
          else -> out.append(c)
        }
      }
    }

    private fun array(): List<Any?> {
      at++
      val out = mutableListOf<Any?>()
      skipSpace()
      if (text[at] == ']') {
        at++
        return out
      }
      while (true) {
        out.add(value())
        skipSpace()
        when (text[at++]) {
          ',' -> continue
          ']' -> return out
          else -> throw IllegalArgumentException("bad JSON array")
        }
      }
    }

    private fun obj(): Map<String, Any?> {
      at++
      val out = linkedMapOf<String, Any?>()
      skipSpace()
      if (text[at] == '}') {
        at++
        return out
      }
      while (true) {
        skipSpace()
        val key = string()
        skipSpace()
        require(text[at++] == ':') { "bad JSON object" }
        out[key] = value()
        skipSpace()
        when (text[at++]) {
          ',' -> continue
          '}' -> return out
          else -> throw IllegalArgumentException("bad JSON object")
        }
      }
    }
  }
}
