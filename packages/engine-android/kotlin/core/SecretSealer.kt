package org.privcomm.engine

/**
 * Seals the store's private records (identity key pair, prekeys, sessions, certificate keys,
 * provisioning key, decrypted plaintexts) before they reach SQLite, and opens them again.
 *
 * On Android the key is a non-exportable AES-GCM key in the Android Keystore
 * (apps/mobile/modules/privcomm-engine: KeystoreSecretSealer): the SQLite file alone, or a
 * backup of it, reveals no private key. `context` names the row a record belongs to and must
 * be authenticated (AES-GCM additional data), so that a record cannot be moved to another row.
 */
interface SecretSealer {
  fun seal(plaintext: ByteArray, context: String): ByteArray

  /** Throws if `sealed` was not sealed by this sealer for this `context`, or was modified. */
  fun open(sealed: ByteArray, context: String): ByteArray
}
