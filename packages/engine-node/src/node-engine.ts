import { randomInt } from 'node:crypto';
import {
  CiphertextMessageType,
  ContentHint,
  ErrorCode,
  Fingerprint,
  IdentityKeyPair,
  type SessionRecord,
  KEMKeyPair,
  KEMPublicKey,
  KyberPreKeyRecord,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  SenderKeyDistributionMessage,
  SenderKeyMessage,
  ServerCertificate,
  SignalMessage,
  SignedPreKeyRecord,
  UnidentifiedSenderMessageContent,
  groupDecrypt,
  groupEncrypt,
  processPreKeyBundle,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptToUsmc,
  sealedSenderEncrypt,
  sealedSenderMultiRecipientEncrypt,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import {
  EngineError,
  isDistributionId,
  NoSenderKeyError,
  UntrustedIdentityError,
  type Address,
  type Ciphertext,
  type DistributionId,
  type MultiRecipientMessage,
  type EncryptedMessage,
  type Decrypted,
  type DecryptOptions,
  type IdentityState,
  type LocalIdentity,
  type PublicPreKey,
  type PublicSignedPreKey,
  type RemoteBundle,
  type SafetyNumber,
  type SignalEngine,
} from '@privcomm/client';
import {
  isAccountId,
  isDeviceId,
  MAX_DEVICES_PER_ACCOUNT,
  MAX_MULTI_RECIPIENT_ACCOUNTS,
  SEALED_SENDER_V2,
  SEALED_SENDER_V2_AT_REST,
  type AccountId,
  type DeviceId,
} from '@privcomm/wire';
import { openShareAtRest } from './at-rest-share.ts';
import { openProvisioningMessage, sealProvisioningMessage } from './provisioning.ts';
import { openDatabase, TransactionQueue, type AfterRollback } from './sqlite.ts';
import {
  libsignalStores,
  own,
  Store,
  type CallbackFailures,
  type LibsignalStores,
} from './store.ts';

/**
 * The Node SignalEngine: the official libsignal (PQXDH, Double Ratchet, sealed sender) over a
 * SQLite protocol store. Every operation is one SQLite transaction (see TransactionQueue).
 *
 * Sealed sender without a server
 * ------------------------------
 * Every message is sealed (Ciphertext.type SEALED_SENDER_V1): the relay sees only the
 * recipient. Signal's sender certificates are issued by its server and chained to a trust root
 * baked into the apps; a blind relay issues nothing, so each engine self-issues: a local "trust
 * root" key signs a ServerCertificate whose key signs a SenderCertificate naming our account id,
 * device id and identity key. Receivers therefore cannot (and do not) check the trust root:
 * decrypt uses sealedSenderDecryptToUsmc, which does not, and never sealedSenderDecrypt.
 *
 * Why the sender is still authenticated (libsignal rust/protocol/src/sealed_sender.rs,
 * sealed_sender_decrypt_to_usmc):
 * - v1 (what sealedSenderEncrypt produces): the outer layer is keyed by DH(ephemeral, our
 *   identity) and carries the sender's static (identity) public key S; the inner layer, which
 *   holds the certificate and the message, is keyed by DH(S, our identity) chained with the
 *   first layer. Only a holder of S's private key (or we ourselves) can produce it, and libsignal
 *   then rejects the message unless the certificate's key equals S ("sender certificate key does
 *   not match message key"). v2 does the same with an authentication tag over DH(S, our identity).
 * - So certificate.key() is authenticated as the sender's identity key. We then decrypt the inner
 *   Signal message as address (certificate uuid, certificate device), and require that the
 *   identity libsignal saved for that address during the decryption (from the PreKey message, or
 *   the session's remote identity; both are MAC-bound into every SignalMessage) is that same key.
 *   The message, its sealed-sender layer and the session thus all name one identity key.
 * - What binds an account id to an identity key is not a server signature but the identity
 *   store: trust on first use, `changed` on a new key, refusal when the account was verified
 *   (safety numbers), exactly as with the keys fetched from the relay. The self-issued
 *   certificate proves "the holder of key S sent this", not "account X owns S". So whenever S
 *   is not the key stored for the account (first contact, or a change), decrypt asks the
 *   caller's `confirmIdentity` before libsignal stores anything; the client core checks S
 *   against the identity key the relay publishes for that account, and a refusal leaves no
 *   trace. The relay is thereby trusted to map accounts to keys at first contact, as Signal's
 *   certificate authority is; safety numbers catch a relay that lies.
 */

/** Ciphertext.type of every message this engine produces: sealed sender v1. */
export const SEALED_SENDER_V1 = 1;
/**
 * The type of a multi-recipient message (groupEncrypt), sealed sender v2, and of one device's
 * share of it as the relay handed it out before it sealed shares at rest
 * (SEALED_SENDER_V2_AT_REST: how the relay hands them out now; `decrypt` opens both).
 */
export { SEALED_SENDER_V2, SEALED_SENDER_V2_AT_REST };

/** Far beyond any device's lifetime: certificates are self-issued and never rotated for expiry. */
const CERTIFICATE_EXPIRY_MS = 253_402_300_799_000; // 9999-12-31
const FINGERPRINT_ITERATIONS = 5200;
const FINGERPRINT_VERSION = 2;
const MAX_BATCH = 1000;
/**
 * How long a replaced signed or last-resort prekey stays: a session start made from it can
 * still arrive for 60 days. libsignal keeps sending PreKey messages on an unacknowledged session
 * for up to 30 days after the bundle was fetched, and the relay keeps each of them for 30 more.
 * After that the private key only helps someone who later steals this device's store.
 */
export const SUPERSEDED_PREKEY_GRACE_MS = 60 * 24 * 60 * 60 * 1000;
const copy = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes);

const uuidBytes = (accountId: string): Uint8Array<ArrayBuffer> => {
  if (!isAccountId(accountId)) throw new TypeError(`account id ${accountId} is not a UUID`);
  return new Uint8Array(Buffer.from(accountId.replaceAll('-', ''), 'hex'));
};

const checkCount = (count: number): void => {
  if (!Number.isInteger(count) || count < 0 || count > MAX_BATCH) {
    throw new RangeError(`count must be an integer from 0 to ${MAX_BATCH}`);
  }
};

/**
 * Account ids are the relay's canonical lowercase UUIDs (isAccountId, from the wire package).
 * Only that spelling is accepted, also from sender certificates: "ABC..." and "abc..." would
 * otherwise be two libsignal addresses with two identity entries, and a forged certificate could
 * claim a known account under a spelling that has no trusted key yet.
 */
const checkAddress = (address: Address): void => {
  if (!isAccountId(address.accountId)) {
    throw new TypeError(`account id ${String(address.accountId)} is not a lowercase UUID`);
  }
  if (!isDeviceId(address.deviceId)) {
    throw new RangeError(`device id ${address.deviceId} is out of range`);
  }
};

const invalidMessage = (reason: string): EngineError => new EngineError('INVALID_MESSAGE', reason);

const checkDistributionId = (distributionId: string): void => {
  if (!isDistributionId(distributionId)) {
    throw new TypeError(`distribution id ${String(distributionId)} is not a lowercase UUID`);
  }
};

const sameDevice = (a: Address, b: ProtocolAddress): boolean =>
  a.accountId === b.name() && a.deviceId === b.deviceId();

/**
 * The most devices one groupEncrypt seals for: as many as one relay upload may name (1,000
 * accounts, a group of 1,000 with the sender's own other devices left out, of up to 6 devices).
 */
export const MAX_GROUP_RECIPIENTS = MAX_MULTI_RECIPIENT_ACCOUNTS * MAX_DEVICES_PER_ACCOUNT;

/**
 * Translates libsignal's errors into the engine's codes. An EngineError thrown by one of our
 * store callbacks reaches here wrapped in a generic libsignal error, so it is taken from
 * `failures` instead.
 */
const engineError = (
  error: unknown,
  accountId: string,
  fallback: EngineError,
  failures?: CallbackFailures,
): unknown => {
  if (error instanceof EngineError) return error;
  if (failures?.first !== undefined) return failures.first;
  if (error instanceof LibSignalErrorBase) {
    switch (error.code) {
      case ErrorCode.UntrustedIdentity:
        return new UntrustedIdentityError(accountId);
      case ErrorCode.DuplicatedMessage:
        return new EngineError('DUPLICATE_MESSAGE', 'this message was already decrypted');
      case ErrorCode.InvalidSession:
        return new EngineError('NO_SESSION', `no usable session with ${accountId}`);
      default:
        return fallback;
    }
  }
  return error;
};

/**
 * libsignal's answer when it holds a sender key for the distribution id but not the chain a
 * message was sent on. Node's binding reports it as a Generic error (code 0) whose message names
 * the missing state (seen with 0.103: "missing sender key state for distribution ID …"), so the
 * text is matched; InvalidSenderKeySession is kept for bindings that report it with its own code.
 * The engine contract's "chain of the sender it was not given" case fails if this stops matching.
 */
const isMissingSenderKeyState = (error: unknown): boolean =>
  error instanceof LibSignalErrorBase &&
  (error.code === ErrorCode.InvalidSenderKeySession ||
    (error.code === ErrorCode.Generic && /missing sender key state/i.test(error.message)));

/** A decrypt attempt that needs the caller to confirm a sender's key first (see decrypt). */
class ConfirmationNeeded extends Error {
  constructor(
    readonly accountId: AccountId,
    readonly identityKey: Uint8Array,
  ) {
    super(`the identity key of ${accountId} needs confirming`);
  }
}

interface ConfirmedIdentity {
  readonly accountId: AccountId;
  readonly identityKey: Uint8Array;
  readonly confirmed: boolean;
}

class NodeSignalEngine implements SignalEngine {
  private certificate: { key: string; certificate: SenderCertificate } | undefined;

  constructor(
    private readonly store: Store,
    private readonly queue: TransactionQueue,
    private readonly now: () => number,
  ) {}

  /** Runs one operation in one transaction, with the libsignal stores bound to it. */
  private run<T>(operation: (stores: OperationStores) => Promise<T> | T): Promise<T> {
    return this.queue.run((afterRollback) =>
      operation(new OperationStores(this.store, afterRollback)),
    );
  }

  private localAddress(): ProtocolAddress {
    const accountId = this.store.getMetaText('local_account_id');
    const deviceId = this.store.getMetaNumber('local_device_id');
    if (accountId === undefined || deviceId === undefined) {
      throw new EngineError('NO_IDENTITY', 'this device has no address yet (setLocalAddress)');
    }
    return ProtocolAddress.new(accountId, deviceId);
  }

  /** Our self-issued sender certificate (see the comment at the top). */
  private senderCertificate(identity: IdentityKeyPair, local: ProtocolAddress): SenderCertificate {
    const key = `${local.toString()}/${Buffer.from(identity.publicKey.serialize()).toString('hex')}`;
    if (this.certificate?.key === key) return this.certificate.certificate;
    const trustRoot = this.store.getMeta('trust_root');
    const serverKey = this.store.getMeta('server_key');
    if (trustRoot === undefined || serverKey === undefined) {
      throw new EngineError('NO_IDENTITY', 'this device has no certificate keys');
    }
    const server = PrivateKey.deserialize(own(serverKey));
    const serverCertificate = ServerCertificate.new(
      1,
      server.getPublicKey(),
      PrivateKey.deserialize(own(trustRoot)),
    );
    const certificate = SenderCertificate.new(
      local.name(),
      null,
      local.deviceId(),
      identity.publicKey,
      CERTIFICATE_EXPIRY_MS,
      serverCertificate,
      server,
    );
    this.certificate = { key, certificate };
    return certificate;
  }

  createIdentity(): Promise<LocalIdentity> {
    return this.run(() => {
      if (this.store.identityKeyPair() !== undefined) {
        throw new EngineError('IDENTITY_EXISTS', 'this device already has an identity');
      }
      return this.importIdentity(IdentityKeyPair.generate());
    });
  }

  private importIdentity(pair: IdentityKeyPair): LocalIdentity {
    // libsignal registration ids are 14-bit; the relay accepts 1..16380.
    const registrationId = randomInt(1, 16381);
    this.store.setMeta('identity_key_pair', pair.serialize());
    this.store.setMeta('registration_id', registrationId);
    // The keys that self-issue our sender certificates (see the comment at the top).
    this.store.setMeta('trust_root', PrivateKey.generate().serialize());
    this.store.setMeta('server_key', PrivateKey.generate().serialize());
    return { identityKey: copy(pair.publicKey.serialize()), registrationId };
  }

  localIdentity(): Promise<LocalIdentity | undefined> {
    return this.run(() => {
      const pair = this.store.identityKeyPair();
      const registrationId = this.store.registrationId();
      if (pair === undefined || registrationId === undefined) return undefined;
      return { identityKey: copy(pair.publicKey.serialize()), registrationId };
    });
  }

  setLocalAddress(address: Address): Promise<void> {
    checkAddress(address);
    return this.run(() => {
      this.store.setMeta('local_account_id', address.accountId);
      this.store.setMeta('local_device_id', address.deviceId);
    });
  }

  generatePreKeys(count: number): Promise<PublicPreKey[]> {
    checkCount(count);
    return this.run(() => {
      this.store.requireIdentityKeyPair();
      return Array.from({ length: count }, () => {
        const keyId = this.store.nextKeyId('next_prekey_id');
        const privateKey = PrivateKey.generate();
        const publicKey = privateKey.getPublicKey();
        this.store.savePreKey(keyId, PreKeyRecord.new(keyId, publicKey, privateKey));
        return { keyId, publicKey: copy(publicKey.serialize()) };
      });
    });
  }

  generateKyberPreKeys(count: number): Promise<PublicSignedPreKey[]> {
    checkCount(count);
    return this.run(() => {
      const identity = this.store.requireIdentityKeyPair();
      return Array.from({ length: count }, () => this.newKyberPreKey(identity, false));
    });
  }

  generateKyberLastResortPreKey(): Promise<PublicSignedPreKey> {
    return this.run(() => {
      const key = this.newKyberPreKey(this.store.requireIdentityKeyPair(), true);
      this.store.retireLastResortKyberPreKeys(this.now(), SUPERSEDED_PREKEY_GRACE_MS);
      return key;
    });
  }

  private newKyberPreKey(identity: IdentityKeyPair, lastResort: boolean): PublicSignedPreKey {
    const keyId = this.store.nextKeyId('next_kyber_prekey_id');
    const keyPair = KEMKeyPair.generate();
    const publicKey = keyPair.getPublicKey().serialize();
    const signature = identity.privateKey.sign(publicKey);
    this.store.saveKyberPreKey(
      keyId,
      KyberPreKeyRecord.new(keyId, this.now(), keyPair, signature),
      lastResort,
    );
    return { keyId, publicKey: copy(publicKey), signature: copy(signature) };
  }

  generateSignedPreKey(): Promise<PublicSignedPreKey> {
    return this.run(() => {
      const identity = this.store.requireIdentityKeyPair();
      const now = this.now();
      const keyId = this.store.nextKeyId('next_signed_prekey_id');
      const privateKey = PrivateKey.generate();
      const publicKey = privateKey.getPublicKey();
      const signature = identity.privateKey.sign(publicKey.serialize());
      this.store.saveSignedPreKey(
        keyId,
        SignedPreKeyRecord.new(keyId, now, publicKey, privateKey, signature),
      );
      this.store.retireSignedPreKeys(now, SUPERSEDED_PREKEY_GRACE_MS);
      return { keyId, publicKey: copy(publicKey.serialize()), signature: copy(signature) };
    });
  }

  processBundle(address: Address, bundle: RemoteBundle): Promise<void> {
    checkAddress(address);
    return this.run(async ({ libsignal }) => {
      this.store.requireIdentityKeyPair();
      const local = this.localAddress();
      let preKeyBundle: PreKeyBundle;
      try {
        preKeyBundle = PreKeyBundle.new(
          bundle.registrationId,
          bundle.deviceId,
          bundle.preKey?.keyId ?? null,
          bundle.preKey === undefined ? null : PublicKey.deserialize(own(bundle.preKey.publicKey)),
          bundle.signedPreKey.keyId,
          PublicKey.deserialize(own(bundle.signedPreKey.publicKey)),
          own(bundle.signedPreKey.signature),
          PublicKey.deserialize(own(bundle.identityKey)),
          bundle.kyberPreKey.keyId,
          KEMPublicKey.deserialize(own(bundle.kyberPreKey.publicKey)),
          own(bundle.kyberPreKey.signature),
        );
      } catch {
        throw invalidMessage('the bundle is malformed');
      }
      try {
        await processPreKeyBundle(
          preKeyBundle,
          ProtocolAddress.new(address.accountId, address.deviceId),
          local,
          libsignal.session,
          libsignal.identity,
        );
      } catch (error) {
        throw engineError(
          error,
          address.accountId,
          invalidMessage('the bundle is invalid'),
          libsignal.failures,
        );
      }
    });
  }

  hasSession(address: Address): Promise<boolean> {
    checkAddress(address);
    return this.run(
      () => this.store.loadSession(address.accountId, address.deviceId)?.hasCurrentState() ?? false,
    );
  }

  sessionDeviceIds(accountId: AccountId): Promise<DeviceId[]> {
    return this.run(() =>
      this.store
        .sessionDeviceIds(accountId)
        // The guard types the ids read back from the store (and drops none a session was made for).
        .filter(isDeviceId)
        .filter((deviceId) => this.store.loadSession(accountId, deviceId)?.hasCurrentState()),
    );
  }

  deleteSession(address: Address): Promise<void> {
    checkAddress(address);
    return this.run(() => this.store.deleteSession(address.accountId, address.deviceId));
  }

  encrypt(address: Address, plaintext: Uint8Array): Promise<EncryptedMessage> {
    checkAddress(address);
    return this.run(async ({ libsignal }) => {
      const identity = this.store.requireIdentityKeyPair();
      const local = this.localAddress();
      const session = this.store.loadSession(address.accountId, address.deviceId);
      if (session === null || !session.hasCurrentState()) {
        throw new EngineError('NO_SESSION', `no session with ${address.accountId}`);
      }
      const remote = ProtocolAddress.new(address.accountId, address.deviceId);
      try {
        const message = await signalEncrypt(
          own(plaintext),
          remote,
          local,
          libsignal.session,
          libsignal.identity,
        );
        const content = UnidentifiedSenderMessageContent.new(
          message,
          this.senderCertificate(identity, local),
          ContentHint.Default,
          null,
        );
        const sealed = await sealedSenderEncrypt(content, remote, libsignal.identity);
        return {
          type: SEALED_SENDER_V1,
          content: copy(sealed),
          registrationId: session.remoteRegistrationId(),
        };
      } catch (error) {
        throw engineError(
          error,
          address.accountId,
          new EngineError('NO_SESSION', `cannot encrypt for ${address.accountId}`),
          libsignal.failures,
        );
      }
    });
  }

  /*
   * Groups: sender keys (libsignal's SenderKeyDistributionMessage, groupEncrypt, groupDecrypt)
   * under sealed sender v2. What authenticates a group message's sender: its sender key was
   * stored under the address of the pairwise (authenticated) message that carried the
   * distribution message, so only a device holding that key's signing key, handed out by that
   * address, can produce a message groupDecrypt accepts for it. On top, the v2 seal names the
   * sender's identity key (authenticated as in v1, see the top) and decrypt requires it to be the
   * account's current identity, as the pairwise path does.
   */

  senderKeyDistribution(distributionId: DistributionId): Promise<Uint8Array> {
    checkDistributionId(distributionId);
    return this.run(async ({ libsignal }) => {
      this.store.requireIdentityKeyPair();
      return copy(await this.ownDistribution(this.localAddress(), distributionId, libsignal));
    });
  }

  /**
   * The distribution message of our key for `distributionId`, the key made on first use. Always
   * the first one (the chain at its start), not libsignal's current one: a member who gets the
   * key late (it asked after NO_SENDER_KEY) can then still open the messages sent before, which
   * it keeps. The price: until the distribution id is replaced, this store holds the chain's
   * start, so whoever seizes it and recorded this device's group ciphertexts under that id can
   * open them (no forward secrecy within one distribution id; SECURITY.md). Callers bound that by
   * starting a new distribution id on every removal, and from time to time.
   */
  private async ownDistribution(
    local: ProtocolAddress,
    distributionId: DistributionId,
    libsignal: LibsignalStores,
  ): Promise<Uint8Array> {
    const stored = this.store.ownDistribution(distributionId);
    if (stored !== undefined) return stored;
    // Our own key is made only here (processSenderKeyDistribution refuses this device's
    // address), so a key without its first message cannot exist.
    const message = (
      await SenderKeyDistributionMessage.create(local, distributionId, libsignal.senderKey)
    ).serialize();
    this.store.saveOwnDistribution(distributionId, message);
    return message;
  }

  processSenderKeyDistribution(sender: Address, message: Uint8Array): Promise<void> {
    checkAddress(sender);
    return this.run(async ({ libsignal }) => {
      this.store.requireIdentityKeyPair();
      const local = this.localAddress();
      // Our own key is ours to make: a distribution message must never replace it.
      if (sameDevice(sender, local)) throw invalidMessage('a sender key from this very device');
      let parsed: SenderKeyDistributionMessage;
      try {
        parsed = SenderKeyDistributionMessage.deserialize(own(message));
      } catch {
        throw invalidMessage('not a sender key distribution message');
      }
      try {
        await processSenderKeyDistributionMessage(
          ProtocolAddress.new(sender.accountId, sender.deviceId),
          parsed,
          libsignal.senderKey,
        );
      } catch (error) {
        throw engineError(
          error,
          sender.accountId,
          invalidMessage('the sender key distribution message is invalid'),
          libsignal.failures,
        );
      }
    });
  }

  groupEncrypt(
    distributionId: DistributionId,
    recipients: readonly Address[],
    plaintext: Uint8Array,
  ): Promise<MultiRecipientMessage> {
    checkDistributionId(distributionId);
    recipients.forEach(checkAddress);
    if (recipients.length === 0 || recipients.length > MAX_GROUP_RECIPIENTS) {
      throw new RangeError(`a group message goes to 1 to ${MAX_GROUP_RECIPIENTS} devices`);
    }
    const distinct = new Set(recipients.map((r) => `${r.accountId}.${r.deviceId}`));
    if (distinct.size !== recipients.length) throw new TypeError('a recipient is listed twice');
    return this.run(async ({ libsignal }) => {
      const identity = this.store.requireIdentityKeyPair();
      const local = this.localAddress();
      if (recipients.some((recipient) => sameDevice(recipient, local))) {
        throw new TypeError('this device cannot be among the recipients of its own message');
      }
      const sessions = recipients.map((address) => ({
        address,
        session: this.store.loadSession(address.accountId, address.deviceId),
      }));
      const missing = sessions.filter(({ session }) => !session?.hasCurrentState());
      if (missing.length > 0) {
        const named = missing.map(({ address: a }) => `${a.accountId}.${a.deviceId}`);
        throw new EngineError('NO_SESSION', `no session with ${named.join(', ')}`);
      }
      // As encrypt (libsignal's isTrustedIdentity when sending): a verified account whose key
      // changed gets nothing until the user accepts the change.
      for (const accountId of new Set(recipients.map((r) => r.accountId))) {
        const row = this.store.identity(accountId);
        if (row !== undefined && row.verified !== 0 && row.pending_key !== null) {
          throw new UntrustedIdentityError(accountId);
        }
      }
      try {
        // Creates this device's sender key on first use, as senderKeyDistribution does.
        await this.ownDistribution(local, distributionId, libsignal);
        const message = await groupEncrypt(
          local,
          distributionId,
          libsignal.senderKey,
          own(plaintext),
        );
        const content = UnidentifiedSenderMessageContent.new(
          message,
          this.senderCertificate(identity, local),
          ContentHint.Default,
          null,
        );
        const sealed = await sealedSenderMultiRecipientEncrypt({
          content,
          recipients: recipients.map((r) => ProtocolAddress.new(r.accountId, r.deviceId)),
          identityStore: libsignal.identity,
          sessionStore: libsignal.session,
        });
        return {
          type: SEALED_SENDER_V2,
          content: copy(sealed),
          recipients: sessions.map(({ address, session }) => ({
            address,
            registrationId: (session as SessionRecord).remoteRegistrationId(),
          })),
        };
      } catch (error) {
        throw engineError(
          error,
          '',
          new EngineError('NO_SESSION', 'cannot encrypt for every recipient'),
          libsignal.failures,
        );
      }
    });
  }

  /**
   * The confirmation of a new sender key (an HTTP lookup in the client core) runs between two
   * transactions, never inside one: the store stays free for other operations meanwhile. The
   * first attempt stops before writing anything when it needs an answer; the next one uses it.
   */
  async decrypt(
    envelopeId: string,
    ciphertext: Ciphertext,
    options: DecryptOptions = {},
  ): Promise<Decrypted> {
    let answer: ConfirmedIdentity | undefined;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.decryptOnce(envelopeId, ciphertext, options, answer);
      } catch (error) {
        // The store changed between attempts and asks about another key: a bounded retry.
        if (!(error instanceof ConfirmationNeeded) || !options.confirmIdentity || attempt >= 3) {
          throw error;
        }
        const confirmed = await options.confirmIdentity(error.accountId, copy(error.identityKey));
        answer = { accountId: error.accountId, identityKey: error.identityKey, confirmed };
      }
    }
  }

  private decryptOnce(
    envelopeId: string,
    ciphertext: Ciphertext,
    options: DecryptOptions,
    answer: ConfirmedIdentity | undefined,
  ): Promise<Decrypted> {
    return this.run(async (stores) => {
      const done = this.store.decrypted(envelopeId);
      if (done !== undefined) {
        const { sender_account: accountId, sender_device: deviceId } = done;
        const distributionId = done.distribution_id;
        // Stored from a checked certificate below; checked again as it comes back from SQLite.
        if (!isAccountId(accountId) || !isDeviceId(deviceId)) {
          throw invalidMessage('the stored result names no valid device');
        }
        return {
          sender: { accountId, deviceId },
          plaintext: copy(done.plaintext),
          ...(distributionId === null ? {} : { distributionId }),
        };
      }
      const identity = this.store.requireIdentityKeyPair();
      const local = this.localAddress();
      // v1 from encrypt, v2 a share of a multi-recipient message (groupEncrypt): libsignal opens
      // both the same way. The relay seals v2 shares at rest to our identity key: opened first.
      let sealed: Uint8Array;
      if (ciphertext.type === SEALED_SENDER_V2_AT_REST) {
        sealed = openShareAtRest(ciphertext.content, identity);
      } else if (ciphertext.type === SEALED_SENDER_V1 || ciphertext.type === SEALED_SENDER_V2) {
        sealed = ciphertext.content;
      } else {
        throw invalidMessage(`unknown ciphertext type ${ciphertext.type}`);
      }
      const { libsignal } = stores;
      let content: UnidentifiedSenderMessageContent;
      try {
        content = await sealedSenderDecryptToUsmc(own(sealed), libsignal.identity);
      } catch (error) {
        throw engineError(
          error,
          '',
          invalidMessage('the sealed message cannot be opened'),
          libsignal.failures,
        );
      }
      const certificate = content.senderCertificate();
      const senderAccount = certificate.senderUuid();
      const senderDevice = certificate.senderDeviceId();
      if (!isAccountId(senderAccount) || !isDeviceId(senderDevice)) {
        throw invalidMessage('the sender certificate names no valid device');
      }
      const sender: Address = { accountId: senderAccount, deviceId: senderDevice };
      if (sender.accountId === local.name() && sender.deviceId === local.deviceId()) {
        throw invalidMessage('a message from this very device');
      }
      const certificateKey = certificate.key().serialize();
      const known = this.store.identity(sender.accountId);
      if (content.msgType() === CiphertextMessageType.SenderKey) {
        // Stores no identity, so it needs no confirmation: a sender whose key is unknown has no
        // sender key here either.
        return this.groupDecryptOnce(envelopeId, stores, content, sender, known?.identity_key);
      }
      const isKnown =
        known !== undefined &&
        (Buffer.from(known.identity_key).equals(certificateKey) ||
          (known.pending_key !== null && Buffer.from(known.pending_key).equals(certificateKey)));
      if (!isKnown && options.confirmIdentity) {
        // Before libsignal stores anything: a refused key must leave no trace (see DecryptOptions).
        const answered =
          answer?.accountId === sender.accountId &&
          Buffer.from(answer.identityKey).equals(certificateKey);
        if (!answered) throw new ConfirmationNeeded(sender.accountId, copy(certificateKey));
        if (!answer.confirmed) {
          throw new EngineError(
            'UNCONFIRMED_IDENTITY',
            `the sender's key is not the identity the relay publishes for ${sender.accountId}`,
          );
        }
      }
      const remote = ProtocolAddress.new(sender.accountId, sender.deviceId);
      let plaintext: Uint8Array;
      try {
        switch (content.msgType()) {
          case CiphertextMessageType.PreKey:
            plaintext = await signalDecryptPreKey(
              PreKeySignalMessage.deserialize(content.contents()),
              remote,
              local,
              libsignal.session,
              libsignal.identity,
              libsignal.preKey,
              libsignal.signedPreKey,
              libsignal.kyberPreKey,
            );
            break;
          case CiphertextMessageType.Whisper:
            plaintext = await signalDecrypt(
              SignalMessage.deserialize(content.contents()),
              remote,
              local,
              libsignal.session,
              libsignal.identity,
            );
            break;
          default:
            throw invalidMessage(`unexpected sealed message type ${content.msgType()}`);
        }
      } catch (error) {
        throw engineError(
          error,
          sender.accountId,
          invalidMessage('the message cannot be decrypted'),
          libsignal.failures,
        );
      }
      // The certificate key is the one the sealed-sender layer authenticated; it must be the
      // identity the session decrypted with (see the comment at the top).
      const decryptedWith = stores.savedIdentity(remote);
      if (decryptedWith === undefined || !decryptedWith.equals(certificate.key())) {
        throw invalidMessage('the sender certificate does not match the session identity');
      }
      this.store.saveDecrypted(envelopeId, sender.accountId, sender.deviceId, plaintext);
      return { sender, plaintext: copy(plaintext) };
    });
  }

  /** decryptOnce for a sender-key (group) message, inside the same transaction. */
  private async groupDecryptOnce(
    envelopeId: string,
    { libsignal }: OperationStores,
    content: UnidentifiedSenderMessageContent,
    sender: Address,
    currentIdentity: Uint8Array | undefined,
  ): Promise<Decrypted> {
    let distributionId: string;
    try {
      distributionId = SenderKeyMessage.deserialize(content.contents()).distributionId();
    } catch {
      throw invalidMessage('the group message is malformed');
    }
    if (this.store.loadSenderKey(sender.accountId, sender.deviceId, distributionId) === null) {
      throw new NoSenderKeyError(sender, distributionId);
    }
    // Sender keys are dropped when an account's identity changes, so a stored one came with the
    // current identity: the seal must name that same key (see the comment at the top).
    const certificateKey = content.senderCertificate().key().serialize();
    if (currentIdentity === undefined || !Buffer.from(currentIdentity).equals(certificateKey)) {
      throw invalidMessage('the sender certificate does not match the sender identity');
    }
    let plaintext: Uint8Array;
    try {
      plaintext = await groupDecrypt(
        ProtocolAddress.new(sender.accountId, sender.deviceId),
        libsignal.senderKey,
        content.contents(),
      );
    } catch (error) {
      if (isMissingSenderKeyState(error)) {
        // A key for this distribution id, but not the chain the message was sent on: the sender
        // made its key again (a restored device). Kept and asked for, as the Kotlin engine does.
        throw new NoSenderKeyError(sender, distributionId);
      }
      throw engineError(
        error,
        sender.accountId,
        invalidMessage('the group message cannot be decrypted'),
        libsignal.failures,
      );
    }
    this.store.saveDecrypted(
      envelopeId,
      sender.accountId,
      sender.deviceId,
      plaintext,
      distributionId,
    );
    return { sender, plaintext: copy(plaintext), distributionId };
  }

  forgetDecrypted(envelopeId: string): Promise<void> {
    return this.run(() => this.store.forgetDecrypted(envelopeId));
  }

  identityState(accountId: AccountId): Promise<IdentityState | undefined> {
    return this.run(() => {
      const row = this.store.identity(accountId);
      if (row === undefined) return undefined;
      return {
        identityKey: copy(row.identity_key),
        verified: row.verified !== 0,
        changed: row.changed !== 0,
        ...(row.pending_key === null ? {} : { pendingIdentityKey: copy(row.pending_key) }),
      };
    });
  }

  setVerified(accountId: AccountId, verified: boolean): Promise<void> {
    return this.run(() => {
      const row = this.requireIdentity(accountId);
      if (verified) {
        // Verifying the current key acknowledges a change to it; a pending key stays pending.
        this.store.putIdentity(accountId, {
          ...row,
          verified: 1,
          changed: row.pending_key === null ? 0 : row.changed,
        });
      } else if (row.pending_key !== null) {
        // Unverified accounts follow trust on first use: the pending key takes over, as it would
        // have had the account not been verified.
        this.replaceIdentity(accountId, row.pending_key, true);
      } else {
        this.store.putIdentity(accountId, { ...row, verified: 0 });
      }
    });
  }

  acceptIdentity(accountId: AccountId): Promise<void> {
    return this.run(() => {
      const row = this.requireIdentity(accountId);
      if (row.pending_key !== null) this.replaceIdentity(accountId, row.pending_key, false);
      else this.store.putIdentity(accountId, { ...row, changed: 0 });
    });
  }

  /** A new current key: sessions made with the old one lead to devices that no longer exist. */
  private replaceIdentity(accountId: string, key: Uint8Array, changed: boolean): void {
    this.store.putIdentity(accountId, {
      identity_key: key,
      verified: 0,
      changed: changed ? 1 : 0,
      pending_key: null,
    });
    for (const deviceId of this.store.sessionDeviceIds(accountId)) {
      this.store.deleteSession(accountId, deviceId);
    }
    this.store.deleteSenderKeys(accountId);
  }

  private requireIdentity(accountId: string) {
    const row = this.store.identity(accountId);
    if (row === undefined) {
      throw new EngineError('NO_IDENTITY', `no identity key is known for ${accountId}`);
    }
    return row;
  }

  safetyNumber(accountId: AccountId): Promise<SafetyNumber> {
    return this.run(() => {
      const identity = this.store.requireIdentityKeyPair();
      const local = this.localAddress();
      const remote = this.requireIdentity(accountId);
      const fingerprint = Fingerprint.new(
        FINGERPRINT_ITERATIONS,
        FINGERPRINT_VERSION,
        uuidBytes(local.name()),
        identity.publicKey,
        uuidBytes(accountId),
        PublicKey.deserialize(own(remote.identity_key)),
      );
      return {
        digits: fingerprint.displayableFingerprint().toString(),
        scannable: copy(fingerprint.scannableFingerprint().toBuffer()),
      };
    });
  }

  createProvisioningKey(): Promise<Uint8Array> {
    return this.run(() => {
      const key = PrivateKey.generate();
      this.store.setMeta('provisioning_key', key.serialize());
      return copy(key.getPublicKey().serialize());
    });
  }

  sealProvisioning(recipientKey: Uint8Array, payload: Uint8Array): Promise<Uint8Array> {
    return this.run(() => {
      const identity = this.store.requireIdentityKeyPair();
      return sealProvisioningMessage(recipientKey, identity.serialize(), payload);
    });
  }

  openProvisioning(ciphertext: Uint8Array): Promise<Uint8Array> {
    return this.run(() => {
      const key = this.store.getMeta('provisioning_key');
      if (key === undefined) {
        throw new EngineError('INVALID_PROVISIONING', 'no provisioning key is waiting');
      }
      const opened = openProvisioningMessage(PrivateKey.deserialize(own(key)), ciphertext);
      if (this.store.identityKeyPair() !== undefined) {
        throw new EngineError('IDENTITY_EXISTS', 'this device already has an identity');
      }
      let pair: IdentityKeyPair;
      try {
        pair = IdentityKeyPair.deserialize(own(opened.identityKeyPair));
      } catch {
        throw new EngineError('INVALID_PROVISIONING', 'the identity key pair is malformed');
      }
      this.importIdentity(pair);
      this.store.deleteMeta('provisioning_key');
      return copy(opened.payload);
    });
  }

  close(): Promise<void> {
    return this.queue.close();
  }

  wipe(): Promise<void> {
    this.certificate = undefined;
    return this.queue.wipe();
  }
}

/** The libsignal stores of one operation, and what they saw. */
class OperationStores {
  readonly libsignal: LibsignalStores;

  constructor(store: Store, afterRollback: (work: AfterRollback) => void) {
    this.libsignal = libsignalStores(store, afterRollback);
  }

  /** The identity key libsignal saved for an address during this operation. */
  savedIdentity(address: ProtocolAddress): PublicKey | undefined {
    return this.libsignal.savedIdentities.get(address.toString());
  }
}

export interface NodeEngineOptions {
  /** The clock that dates prekeys and retires replaced ones (tests move it). */
  readonly now?: () => number;
}

/**
 * Opens the engine whose protocol store is the SQLite database `file` (created with mode 0600
 * if missing; ':memory:' for a throwaway store). One engine per file at a time.
 */
export const openNodeEngine = async (
  file: string,
  options: NodeEngineOptions = {},
): Promise<SignalEngine> => {
  const db = openDatabase(file);
  return new NodeSignalEngine(new Store(db), new TransactionQueue(db), options.now ?? Date.now);
};
