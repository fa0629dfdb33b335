/**
 * The Signal Protocol engine, as the client core sees it. An engine owns its protocol store
 * (identity, sessions, prekeys, Kyber prekeys, remote identities) and exposes only operations;
 * private keys never leave it. Each operation commits whole: an operation that throws leaves
 * the store as it was.
 *
 * Implementations: @privcomm/engine-node (libsignal-client + SQLite) and the Android engine
 * (Kotlin over libsignal-android). Both must pass the contract suite in
 * `@privcomm/client/testing` (engineContract).
 */

import { UUID_PATTERN, type AccountId, type DeviceId } from '@privcomm/wire';

/**
 * A device: its account id (the libsignal address name) and device id. Branded: only values that
 * passed wire's guards (isAccountId, isDeviceId) where they entered the client can be used here.
 */
export interface Address {
  readonly accountId: AccountId;
  readonly deviceId: DeviceId;
}

export interface LocalIdentity {
  /** Serialised identity public key (33 bytes). */
  readonly identityKey: Uint8Array;
  readonly registrationId: number;
}

export interface PublicPreKey {
  readonly keyId: number;
  readonly publicKey: Uint8Array;
}

export interface PublicSignedPreKey extends PublicPreKey {
  readonly signature: Uint8Array;
}

/** One device's bundle, as fetched from the relay. */
export interface RemoteBundle {
  readonly identityKey: Uint8Array;
  readonly deviceId: DeviceId;
  readonly registrationId: number;
  readonly signedPreKey: PublicSignedPreKey;
  readonly preKey?: PublicPreKey;
  readonly kyberPreKey: PublicSignedPreKey;
}

/** What an encrypted message looks like on the wire: an opaque type and the bytes. */
export interface Ciphertext {
  readonly type: number;
  readonly content: Uint8Array;
}

/** An encrypted message for one device, with the registration id its session was made with. */
export interface EncryptedMessage extends Ciphertext {
  /** The relay checks it against the device's current one (410 when it changed). */
  readonly registrationId: number;
}

export interface Decrypted {
  readonly sender: Address;
  readonly plaintext: Uint8Array;
  /**
   * Set when the message was encrypted with the sender's group sender key (groupEncrypt): the
   * distribution id it was sent under. Absent for a pairwise message.
   */
  readonly distributionId?: DistributionId;
}

/**
 * A sender key's id (libsignal's distribution id): a random UUID string in lower case. Each member
 * device has its own sender key per group, and a new one (new id) after every membership removal.
 */
export type DistributionId = string;

const UUID = new RegExp(UUID_PATTERN);

/** Whether `value` is a distribution id as engines accept them (a lowercase canonical UUID). */
export const isDistributionId = (value: unknown): value is DistributionId =>
  typeof value === 'string' && UUID.test(value);

/** One recipient device of a multi-recipient message, with its session's registration id. */
export interface MultiRecipientDevice {
  readonly address: Address;
  /** The relay checks it against the device's current one (410 for that account when it changed). */
  readonly registrationId: number;
}

/**
 * One upload for many devices: libsignal's multi-recipient sealed sender (v2) message. The relay
 * splits it into one envelope per device, seals each device's share to its account's identity
 * key, and learns nothing that links them beyond arrival time.
 */
export interface MultiRecipientMessage {
  /**
   * SEALED_SENDER_V2 (wire), the type of the upload. Each device receives its share sealed at
   * rest by the relay, as Ciphertext.type SEALED_SENDER_V2_AT_REST, which `decrypt` opens.
   */
  readonly type: number;
  readonly content: Uint8Array;
  readonly recipients: readonly MultiRecipientDevice[];
}

/**
 * Trust in a remote account's identity key, trust-on-first-use:
 * - the first key seen is stored and trusted;
 * - a different key later replaces it and sets `changed` (for the UI to surface), unless the
 *   account was `verified`: then the new key is kept aside, `changed` is set, and every
 *   operation with that account fails with UntrustedIdentityError until `acceptIdentity`.
 */
export interface IdentityState {
  readonly identityKey: Uint8Array;
  readonly verified: boolean;
  /** A new identity key was seen and not yet acknowledged. */
  readonly changed: boolean;
  /** With a verified account: the new key awaiting acceptance. */
  readonly pendingIdentityKey?: Uint8Array;
}

export interface DecryptOptions {
  /**
   * Asked, before anything is committed, when a sender's identity key is not the one stored for
   * its account (first contact, or a change). Sealed-sender certificates here are self-issued,
   * so they prove possession of a key, not ownership of an account: the caller confirms the
   * key with the relay's published identity for that account. `false` refuses the message with
   * UNCONFIRMED_IDENTITY and leaves the store unchanged. The engine does not hold its store
   * while it waits for the answer: other operations go on meanwhile.
   */
  readonly confirmIdentity?: (accountId: AccountId, identityKey: Uint8Array) => Promise<boolean>;
}

export interface SafetyNumber {
  /** 60 digits, as libsignal computes them (12 groups of 5 when displayed). */
  readonly digits: string;
  /** libsignal's scannable fingerprint (for a QR code). */
  readonly scannable: Uint8Array;
}

export interface SignalEngine {
  /** Creates this device's identity key pair and registration id. Fails if one exists. */
  createIdentity(): Promise<LocalIdentity>;
  /** The identity created or imported earlier, or undefined for a new profile. */
  localIdentity(): Promise<LocalIdentity | undefined>;
  /** The address the relay assigned to this device; sender certificates name it. */
  setLocalAddress(address: Address): Promise<void>;

  /** Generates one-time EC prekeys with fresh ids; the private halves stay in the engine. */
  generatePreKeys(count: number): Promise<PublicPreKey[]>;
  /** Generates one-time Kyber prekeys, signed by the identity key. */
  generateKyberPreKeys(count: number): Promise<PublicSignedPreKey[]>;
  /**
   * A new signed EC prekey. Earlier ones stay usable for session starts still in flight, and
   * are deleted once replaced for longer than such a start can take to arrive (60 days: up to
   * 30 of an unacknowledged session, then 30 in the relay's queue), for forward secrecy.
   */
  generateSignedPreKey(): Promise<PublicSignedPreKey>;
  /** A new Kyber last-resort prekey; earlier ones are kept and retired as signed prekeys are. */
  generateKyberLastResortPreKey(): Promise<PublicSignedPreKey>;

  /** Starts a session with a remote device from its bundle (PQXDH). */
  processBundle(address: Address, bundle: RemoteBundle): Promise<void>;
  hasSession(address: Address): Promise<boolean>;
  /** Device ids of an account this device has sessions with. */
  sessionDeviceIds(accountId: AccountId): Promise<DeviceId[]>;
  deleteSession(address: Address): Promise<void>;

  /**
   * Encrypts for one remote device with its session, sealed so that the relay cannot see the
   * sender: the result names the sender only inside the encryption.
   */
  encrypt(address: Address, plaintext: Uint8Array): Promise<EncryptedMessage>;
  /**
   * Decrypts an envelope. Idempotent per `envelopeId`: the result is committed together with
   * the session update, and a redelivered envelope returns the stored result instead of
   * failing as a duplicate. `forgetDecrypted` drops the stored result once the caller has it
   * durably.
   */
  decrypt(envelopeId: string, ciphertext: Ciphertext, options?: DecryptOptions): Promise<Decrypted>;
  forgetDecrypted(envelopeId: string): Promise<void>;

  /**
   * Groups (sender keys). This device's sender key distribution message for `distributionId`,
   * creating the sender key on first use and returning the same key's message afterwards. The
   * caller sends it to each member device pairwise (encrypt), never through the relay in clear.
   */
  senderKeyDistribution(distributionId: DistributionId): Promise<Uint8Array>;
  /**
   * Stores a member device's sender key from the distribution message it sent pairwise.
   * INVALID_MESSAGE when the bytes are not one.
   */
  processSenderKeyDistribution(sender: Address, message: Uint8Array): Promise<void>;
  /**
   * Encrypts `plaintext` once with this device's sender key for `distributionId` (created on
   * first use, as senderKeyDistribution does) and seals it for every recipient device in one
   * multi-recipient message. Needs a session with every recipient: NO_SESSION otherwise, naming
   * the devices without one. Each recipient decrypts its share with `decrypt`, which then sets
   * `distributionId`; a recipient without the sender's key gets NO_SENDER_KEY (with `sender`), so
   * it can ask for the key and keep the envelope until it arrives.
   */
  groupEncrypt(
    distributionId: DistributionId,
    recipients: readonly Address[],
    plaintext: Uint8Array,
  ): Promise<MultiRecipientMessage>;

  identityState(accountId: AccountId): Promise<IdentityState | undefined>;
  /** Marks the current identity key of an account as verified (or not). */
  setVerified(accountId: AccountId, verified: boolean): Promise<void>;
  /** Accepts a changed identity: the new key becomes current, unverified, not changed. */
  acceptIdentity(accountId: AccountId): Promise<void>;

  /** The safety number between this account and another, from both identity keys. */
  safetyNumber(accountId: AccountId): Promise<SafetyNumber>;

  /** New device: an ephemeral key pair for the provisioning message; returns its public key. */
  createProvisioningKey(): Promise<Uint8Array>;
  /**
   * Primary: encrypts this account's identity key pair plus `payload` to a new device's
   * provisioning key. The identity private key leaves the engine only inside this ciphertext.
   */
  sealProvisioning(recipientKey: Uint8Array, payload: Uint8Array): Promise<Uint8Array>;
  /** New device: decrypts, imports the identity key pair (new registration id), returns payload. */
  openProvisioning(ciphertext: Uint8Array): Promise<Uint8Array>;

  close(): Promise<void>;
  /**
   * Erases everything this engine keeps (the identity key pair, prekeys, sessions, others'
   * identities, kept plaintexts), then closes it: opening its store again gives a new, empty
   * engine. For after the account or this device was deleted on the relay. The engine erases
   * because only it knows where and how its secrets are kept.
   */
  wipe(): Promise<void>;
}

/** Base of every engine error; `code` is stable across engines. */
export class EngineError extends Error {
  constructor(
    readonly code:
      | 'UNTRUSTED_IDENTITY'
      | 'UNCONFIRMED_IDENTITY'
      | 'NO_SESSION'
      | 'INVALID_MESSAGE'
      | 'DUPLICATE_MESSAGE'
      | 'NO_IDENTITY'
      | 'IDENTITY_EXISTS'
      | 'INVALID_PROVISIONING'
      | 'NO_SENDER_KEY',
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

/** An operation with an account whose identity changed after it was verified. */
export class UntrustedIdentityError extends EngineError {
  constructor(readonly accountId: string) {
    super('UNTRUSTED_IDENTITY', `the identity key of ${accountId} changed since it was verified`);
    this.name = 'UntrustedIdentityError';
  }
}

/**
 * A group message whose sender key this device does not have (its distribution message is late,
 * or was lost). The envelope is kept, not dropped: the caller asks `sender` for its key and
 * decrypts again once it has it.
 */
export class NoSenderKeyError extends EngineError {
  constructor(
    readonly sender: Address,
    readonly distributionId: DistributionId,
  ) {
    super(
      'NO_SENDER_KEY',
      `no sender key from ${sender.accountId}.${sender.deviceId} for ${distributionId}`,
    );
    this.name = 'NoSenderKeyError';
  }
}
