import {
  type Direction,
  type PrivateKey,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  type ProtocolAddress,
  PublicKey,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from '@signalapp/libsignal-client';
import { EngineError } from '@privcomm/client';
import type { AfterRollback, SqliteDatabase } from './sqlite.ts';

/** libsignal takes `Uint8Array<ArrayBuffer>`; SQLite and callers hand out any Uint8Array. */
export const own = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(bytes);

export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((value, i) => value === b[i]);

export interface IdentityRow {
  identity_key: Uint8Array;
  verified: number;
  changed: number;
  pending_key: Uint8Array | null;
}

export interface DecryptedRow {
  sender_account: string;
  sender_device: number;
  plaintext: Uint8Array;
  /** Set for a group message: the sender key's distribution id. */
  distribution_id: string | null;
}

export type MetaKey =
  | 'identity_key_pair'
  | 'registration_id'
  | 'local_account_id'
  | 'local_device_id'
  | 'trust_root'
  | 'server_key'
  | 'provisioning_key'
  | 'next_prekey_id'
  | 'next_signed_prekey_id'
  | 'next_kyber_prekey_id';

/**
 * libsignal reports an exception thrown by a store callback as a generic error that keeps only
 * its message; the callbacks record their EngineError here so the operation can rethrow it.
 */
export class CallbackFailures {
  first: EngineError | undefined;

  guard<T>(work: () => T): T {
    try {
      return work();
    } catch (error) {
      if (error instanceof EngineError) this.first ??= error;
      throw error;
    }
  }
}

/** libsignal prekey ids are 24-bit. */
const MAX_KEY_ID = 0xffffff;

/**
 * The ids of the keys that a newer key replaced at least `graceMs` before `now`: each key is
 * superseded when the next one (by creation time) was made. The newest key is never among them.
 */
const superseded = (
  keys: readonly { id(): number; timestamp(): number }[],
  now: number,
  graceMs: number,
): number[] => {
  const byAge = [...keys].sort((a, b) => a.timestamp() - b.timestamp());
  return byAge
    .filter((_, i) => i + 1 < byAge.length && now - byAge[i + 1]!.timestamp() >= graceMs)
    .map((key) => key.id());
};

/**
 * The protocol store: typed access to the tables, and the libsignal store interfaces on top.
 * It is only ever used inside a TransactionQueue operation.
 */
export class Store {
  constructor(private readonly db: SqliteDatabase) {}

  /** meta.value has no type affinity: bytes, text and numbers are stored as they are. */
  private meta(key: MetaKey): unknown {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as
      { value: unknown } | undefined;
    return row?.value;
  }

  setMeta(key: MetaKey, value: Uint8Array | string | number): void {
    this.db
      .prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      )
      .run(key, value);
  }

  getMeta(key: MetaKey): Uint8Array | undefined {
    const value = this.meta(key);
    return value instanceof Uint8Array ? value : undefined;
  }

  getMetaText(key: MetaKey): string | undefined {
    const value = this.meta(key);
    return typeof value === 'string' ? value : undefined;
  }

  getMetaNumber(key: MetaKey): number | undefined {
    const value = this.meta(key);
    return typeof value === 'number' ? value : undefined;
  }

  deleteMeta(key: MetaKey): void {
    this.db.prepare('DELETE FROM meta WHERE key = ?').run(key);
  }

  /** The next key id of a kind: 1, 2, ... wrapping within libsignal's 24-bit range. */
  nextKeyId(counter: 'next_prekey_id' | 'next_signed_prekey_id' | 'next_kyber_prekey_id'): number {
    const id = this.getMetaNumber(counter) ?? 1;
    this.setMeta(counter, id >= MAX_KEY_ID ? 1 : id + 1);
    return id;
  }

  identityKeyPair(): IdentityKeyPair | undefined {
    const bytes = this.getMeta('identity_key_pair');
    return bytes === undefined ? undefined : IdentityKeyPair.deserialize(own(bytes));
  }

  requireIdentityKeyPair(): IdentityKeyPair {
    const pair = this.identityKeyPair();
    if (pair === undefined) throw new EngineError('NO_IDENTITY', 'this device has no identity yet');
    return pair;
  }

  registrationId(): number | undefined {
    return this.getMetaNumber('registration_id');
  }

  // --- one-time EC prekeys, signed prekeys, Kyber prekeys ---

  savePreKey(id: number, record: PreKeyRecord): void {
    this.db
      .prepare('INSERT OR REPLACE INTO prekeys (id, record) VALUES (?, ?)')
      .run(id, record.serialize());
  }

  loadPreKey(id: number): PreKeyRecord {
    const row = this.db.prepare('SELECT record FROM prekeys WHERE id = ?').get(id) as
      { record: Uint8Array } | undefined;
    if (row === undefined) throw new EngineError('INVALID_MESSAGE', `unknown prekey ${id}`);
    return PreKeyRecord.deserialize(own(row.record));
  }

  removePreKey(id: number): void {
    this.db.prepare('DELETE FROM prekeys WHERE id = ?').run(id);
  }

  saveSignedPreKey(id: number, record: SignedPreKeyRecord): void {
    this.db
      .prepare('INSERT OR REPLACE INTO signed_prekeys (id, record) VALUES (?, ?)')
      .run(id, record.serialize());
  }

  loadSignedPreKey(id: number): SignedPreKeyRecord {
    const row = this.db.prepare('SELECT record FROM signed_prekeys WHERE id = ?').get(id) as
      { record: Uint8Array } | undefined;
    if (row === undefined) throw new EngineError('INVALID_MESSAGE', `unknown signed prekey ${id}`);
    return SignedPreKeyRecord.deserialize(own(row.record));
  }

  /**
   * Deletes the signed prekeys that a newer one replaced at least `graceMs` before `now`, so
   * that a later compromise of this device cannot open old session starts. The newest key
   * always stays. Returns the ids deleted.
   */
  retireSignedPreKeys(now: number, graceMs: number): number[] {
    return this.retire(
      'SELECT record FROM signed_prekeys',
      (bytes) => SignedPreKeyRecord.deserialize(bytes),
      now,
      graceMs,
      ['DELETE FROM signed_prekeys WHERE id = ?'],
    );
  }

  /** As retireSignedPreKeys, for the Kyber last-resort prekeys (and their remembered uses). */
  retireLastResortKyberPreKeys(now: number, graceMs: number): number[] {
    return this.retire(
      'SELECT record FROM kyber_prekeys WHERE last_resort = 1',
      (bytes) => KyberPreKeyRecord.deserialize(bytes),
      now,
      graceMs,
      [
        'DELETE FROM kyber_prekeys WHERE id = ?',
        'DELETE FROM kyber_prekey_uses WHERE kyber_id = ?',
      ],
    );
  }

  /** Runs each `deletes` statement with the id of every key `superseded` names. */
  private retire(
    select: string,
    deserialize: (bytes: Uint8Array<ArrayBuffer>) => { id(): number; timestamp(): number },
    now: number,
    graceMs: number,
    deletes: readonly string[],
  ): number[] {
    const rows = this.db.prepare(select).all() as { record: Uint8Array }[];
    const retired = superseded(
      rows.map(({ record }) => deserialize(own(record))),
      now,
      graceMs,
    );
    const statements = deletes.map((sql) => this.db.prepare(sql));
    for (const id of retired) for (const statement of statements) statement.run(id);
    return retired;
  }

  saveKyberPreKey(id: number, record: KyberPreKeyRecord, lastResort: boolean): void {
    this.db
      .prepare('INSERT OR REPLACE INTO kyber_prekeys (id, record, last_resort) VALUES (?, ?, ?)')
      .run(id, record.serialize(), lastResort ? 1 : 0);
  }

  loadKyberPreKey(id: number): KyberPreKeyRecord {
    const row = this.db.prepare('SELECT record FROM kyber_prekeys WHERE id = ?').get(id) as
      { record: Uint8Array } | undefined;
    if (row === undefined) throw new EngineError('INVALID_MESSAGE', `unknown Kyber prekey ${id}`);
    return KyberPreKeyRecord.deserialize(own(row.record));
  }

  /**
   * A one-time Kyber prekey is deleted once used. A last-resort one stays, but each
   * (signed prekey, base key) it was used with is remembered: seeing one again means a PreKey
   * message is being replayed (for instance after its session was deleted), and is refused.
   */
  markKyberPreKeyUsed(id: number, signedPreKeyId: number, baseKey: PublicKey): void {
    const row = this.db.prepare('SELECT last_resort FROM kyber_prekeys WHERE id = ?').get(id) as
      { last_resort: number } | undefined;
    if (row === undefined) throw new EngineError('INVALID_MESSAGE', `unknown Kyber prekey ${id}`);
    if (row.last_resort === 0) {
      this.db.prepare('DELETE FROM kyber_prekeys WHERE id = ?').run(id);
      return;
    }
    const inserted = this.db
      .prepare(
        'INSERT OR IGNORE INTO kyber_prekey_uses (kyber_id, signed_id, base_key) VALUES (?, ?, ?)',
      )
      .run(id, signedPreKeyId, baseKey.serialize());
    if (inserted.changes === 0) {
      throw new EngineError('DUPLICATE_MESSAGE', 'this PreKey message was already processed');
    }
  }

  // --- sessions ---

  loadSession(accountId: string, deviceId: number): SessionRecord | null {
    const row = this.db
      .prepare('SELECT record FROM sessions WHERE account_id = ? AND device_id = ?')
      .get(accountId, deviceId) as { record: Uint8Array } | undefined;
    return row === undefined ? null : SessionRecord.deserialize(own(row.record));
  }

  saveSession(accountId: string, deviceId: number, record: SessionRecord): void {
    this.db
      .prepare('INSERT OR REPLACE INTO sessions (account_id, device_id, record) VALUES (?, ?, ?)')
      .run(accountId, deviceId, record.serialize());
  }

  deleteSession(accountId: string, deviceId: number): void {
    this.db
      .prepare('DELETE FROM sessions WHERE account_id = ? AND device_id = ?')
      .run(accountId, deviceId);
  }

  sessionDeviceIds(accountId: string): number[] {
    const rows = this.db
      .prepare('SELECT device_id FROM sessions WHERE account_id = ? ORDER BY device_id')
      .all(accountId) as { device_id: number }[];
    return rows.map((row) => row.device_id);
  }

  // --- remote identities (one per account: all devices of an account share its identity) ---

  identity(accountId: string): IdentityRow | undefined {
    return this.db
      .prepare(
        'SELECT identity_key, verified, changed, pending_key FROM identities WHERE account_id = ?',
      )
      .get(accountId) as IdentityRow | undefined;
  }

  putIdentity(accountId: string, row: IdentityRow): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO identities (account_id, identity_key, verified, changed, pending_key)
         VALUES (?, ?, ?, ?, ?)`,
      )
      .run(accountId, row.identity_key, row.verified, row.changed, row.pending_key);
  }

  // --- sender keys (groups) ---

  loadSenderKey(
    accountId: string,
    deviceId: number,
    distributionId: string,
  ): SenderKeyRecord | null {
    const row = this.db
      .prepare(
        'SELECT record FROM sender_keys WHERE account_id = ? AND device_id = ? AND distribution_id = ?',
      )
      .get(accountId, deviceId, distributionId) as { record: Uint8Array } | undefined;
    return row === undefined ? null : SenderKeyRecord.deserialize(own(row.record));
  }

  saveSenderKey(
    accountId: string,
    deviceId: number,
    distributionId: string,
    record: SenderKeyRecord,
  ): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO sender_keys (account_id, device_id, distribution_id, record)
         VALUES (?, ?, ?, ?)`,
      )
      .run(accountId, deviceId, distributionId, record.serialize());
  }

  /** This device's first distribution message for one of its own distribution ids. */
  ownDistribution(distributionId: string): Uint8Array | undefined {
    const row = this.db
      .prepare('SELECT message FROM sender_key_distributions WHERE distribution_id = ?')
      .get(distributionId) as { message: Uint8Array } | undefined;
    return row?.message;
  }

  saveOwnDistribution(distributionId: string, message: Uint8Array): void {
    this.db
      .prepare('INSERT INTO sender_key_distributions (distribution_id, message) VALUES (?, ?)')
      .run(distributionId, message);
  }

  /** Forgets the sender keys of an account's devices (its identity changed: they came with the old one). */
  deleteSenderKeys(accountId: string): void {
    this.db.prepare('DELETE FROM sender_keys WHERE account_id = ?').run(accountId);
  }

  // --- decrypted envelopes ---

  decrypted(envelopeId: string): DecryptedRow | undefined {
    return this.db
      .prepare(
        `SELECT sender_account, sender_device, plaintext, distribution_id
         FROM decrypted WHERE envelope_id = ?`,
      )
      .get(envelopeId) as DecryptedRow | undefined;
  }

  saveDecrypted(
    envelopeId: string,
    accountId: string,
    deviceId: number,
    plaintext: Uint8Array,
    distributionId: string | null = null,
  ) {
    this.db
      .prepare(
        `INSERT INTO decrypted (envelope_id, sender_account, sender_device, plaintext, distribution_id)
         VALUES (?, ?, ?, ?, ?)`,
      )
      .run(envelopeId, accountId, deviceId, plaintext, distributionId);
  }

  forgetDecrypted(envelopeId: string): void {
    this.db.prepare('DELETE FROM decrypted WHERE envelope_id = ?').run(envelopeId);
  }
}

/**
 * The identity policy, trust on first use (see IdentityState in @privcomm/client):
 * - no key stored for the account: trusted, and stored by saveIdentity;
 * - the stored key: trusted, unless the account is verified and a changed key is pending;
 * - another key, account not verified: trusted; saveIdentity replaces the key and sets
 *   `changed`, and drops the sessions with the account's other devices (they were made with
 *   the old identity, which every device of an account shares);
 * - another key, account verified: not trusted, so libsignal refuses the operation; the key is
 *   recorded as pending (after the operation's rollback) until acceptIdentity.
 * Our own account is trusted only with our own identity key (linked devices share it).
 */
class EngineIdentityKeyStore extends IdentityKeyStore {
  /** The identity keys libsignal saved during this operation, by address. */
  readonly saved = new Map<string, PublicKey>();

  constructor(
    private readonly store: Store,
    private readonly failures: CallbackFailures,
    private readonly afterRollback: (work: AfterRollback) => void,
  ) {
    super();
  }

  override async getIdentityKey(): Promise<PrivateKey> {
    return this.failures.guard(() => this.store.requireIdentityKeyPair().privateKey);
  }

  override async getLocalRegistrationId(): Promise<number> {
    return this.failures.guard(() => {
      const id = this.store.registrationId();
      if (id === undefined) throw new EngineError('NO_IDENTITY', 'this device has no identity yet');
      return id;
    });
  }

  override async isTrustedIdentity(
    address: ProtocolAddress,
    key: PublicKey,
    _direction: Direction,
  ): Promise<boolean> {
    const accountId = address.name();
    if (accountId === this.store.getMetaText('local_account_id')) {
      return key.equals(this.store.requireIdentityKeyPair().publicKey);
    }
    const row = this.store.identity(accountId);
    if (row === undefined) return true;
    const serialized = key.serialize();
    if (row.verified === 0) return true;
    if (row.pending_key === null && equalBytes(row.identity_key, serialized)) return true;
    if (!equalBytes(row.identity_key, serialized)) {
      // Survives the rollback of the refused operation, so that the UI can show the change.
      this.afterRollback(() => {
        const current = this.store.identity(accountId);
        if (current === undefined || current.verified === 0) return;
        if (equalBytes(current.identity_key, serialized)) return;
        this.store.putIdentity(accountId, { ...current, changed: 1, pending_key: serialized });
      });
    }
    return false;
  }

  override async saveIdentity(address: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const accountId = address.name();
    const serialized = key.serialize();
    this.saved.set(address.toString(), key);
    const row = this.store.identity(accountId);
    if (row === undefined) {
      this.store.putIdentity(accountId, {
        identity_key: serialized,
        verified: 0,
        changed: 0,
        pending_key: null,
      });
      return IdentityChange.NewOrUnchanged;
    }
    if (equalBytes(row.identity_key, serialized)) return IdentityChange.NewOrUnchanged;
    // Only reached for an unverified account: isTrustedIdentity refused the verified case.
    this.store.putIdentity(accountId, {
      identity_key: serialized,
      verified: 0,
      changed: 1,
      pending_key: null,
    });
    this.store.deleteSenderKeys(accountId);
    for (const deviceId of this.store.sessionDeviceIds(accountId)) {
      if (deviceId !== address.deviceId()) this.store.deleteSession(accountId, deviceId);
    }
    return IdentityChange.ReplacedExisting;
  }

  override async getIdentity(address: ProtocolAddress): Promise<PublicKey | null> {
    const row = this.store.identity(address.name());
    return row === undefined ? null : PublicKey.deserialize(own(row.identity_key));
  }
}

class EngineSessionStore extends SessionStore {
  constructor(
    private readonly store: Store,
    private readonly failures: CallbackFailures,
  ) {
    super();
  }

  override async saveSession(address: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.store.saveSession(address.name(), address.deviceId(), record);
  }

  override async getSession(address: ProtocolAddress): Promise<SessionRecord | null> {
    return this.store.loadSession(address.name(), address.deviceId());
  }

  override async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return this.failures.guard(() =>
      addresses.map((address) => {
        const record = this.store.loadSession(address.name(), address.deviceId());
        if (record === null) throw new EngineError('NO_SESSION', `no session with ${address}`);
        return record;
      }),
    );
  }
}

/** Sender keys by (address, distribution id); see Store.loadSenderKey. */
class EngineSenderKeyStore extends SenderKeyStore {
  constructor(private readonly store: Store) {
    super();
  }

  override async saveSenderKey(
    sender: ProtocolAddress,
    distributionId: string,
    record: SenderKeyRecord,
  ): Promise<void> {
    this.store.saveSenderKey(sender.name(), sender.deviceId(), distributionId, record);
  }

  override async getSenderKey(
    sender: ProtocolAddress,
    distributionId: string,
  ): Promise<SenderKeyRecord | null> {
    return this.store.loadSenderKey(sender.name(), sender.deviceId(), distributionId);
  }
}

class EnginePreKeyStore extends PreKeyStore {
  constructor(
    private readonly store: Store,
    private readonly failures: CallbackFailures,
  ) {
    super();
  }

  override async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.store.savePreKey(id, record);
  }

  override async getPreKey(id: number): Promise<PreKeyRecord> {
    return this.failures.guard(() => this.store.loadPreKey(id));
  }

  override async removePreKey(id: number): Promise<void> {
    this.store.removePreKey(id);
  }
}

class EngineSignedPreKeyStore extends SignedPreKeyStore {
  constructor(
    private readonly store: Store,
    private readonly failures: CallbackFailures,
  ) {
    super();
  }

  override async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.store.saveSignedPreKey(id, record);
  }

  override async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    return this.failures.guard(() => this.store.loadSignedPreKey(id));
  }
}

class EngineKyberPreKeyStore extends KyberPreKeyStore {
  constructor(
    private readonly store: Store,
    private readonly failures: CallbackFailures,
  ) {
    super();
  }

  override async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.store.saveKyberPreKey(id, record, false);
  }

  override async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    return this.failures.guard(() => this.store.loadKyberPreKey(id));
  }

  override async markKyberPreKeyUsed(
    id: number,
    signedPreKeyId: number,
    baseKey: PublicKey,
  ): Promise<void> {
    this.failures.guard(() => this.store.markKyberPreKeyUsed(id, signedPreKeyId, baseKey));
  }
}

/** The six libsignal stores of one operation. */
export interface LibsignalStores {
  readonly identity: IdentityKeyStore;
  /** The identity keys libsignal saved during the operation, by address (toString()). */
  readonly savedIdentities: ReadonlyMap<string, PublicKey>;
  /** The first EngineError a callback threw during the operation. */
  readonly failures: CallbackFailures;
  readonly session: SessionStore;
  readonly preKey: PreKeyStore;
  readonly signedPreKey: SignedPreKeyStore;
  readonly kyberPreKey: KyberPreKeyStore;
  readonly senderKey: SenderKeyStore;
}

export const libsignalStores = (
  store: Store,
  afterRollback: (work: AfterRollback) => void,
): LibsignalStores => {
  const failures = new CallbackFailures();
  const identity = new EngineIdentityKeyStore(store, failures, afterRollback);
  return {
    identity,
    savedIdentities: identity.saved,
    failures,
    session: new EngineSessionStore(store, failures),
    preKey: new EnginePreKeyStore(store, failures),
    signedPreKey: new EngineSignedPreKeyStore(store, failures),
    kyberPreKey: new EngineKyberPreKeyStore(store, failures),
    senderKey: new EngineSenderKeyStore(store),
  };
};
