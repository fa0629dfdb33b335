import { createDecipheriv, hkdfSync, randomUUID } from 'node:crypto';
import type { PublicKey, SenderKeyRecord, SessionRecord } from '@signalapp/libsignal-client';
import {
  ContentHint,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  PreKeyBundle,
  PrivateKey,
  ProtocolAddress,
  PublicKey as SignalPublicKey,
  SenderCertificate,
  SenderKeyDistributionMessage,
  SenderKeyStore,
  ServerCertificate,
  SessionStore,
  UnidentifiedSenderMessageContent,
  groupDecrypt,
  groupEncrypt,
  processPreKeyBundle,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptToUsmc,
  sealedSenderMultiRecipientEncrypt,
} from '@signalapp/libsignal-client';
import { AT_REST_SHARE_INFO, SEALED_SENDER_V2, SEALED_SENDER_V2_AT_REST } from '@privcomm/wire';
import { TestDevice } from './client.ts';

/**
 * Real multi-recipient sealed messages for the relay's tests, made with libsignal as the engines
 * make them (a sender key message under a self-issued sender certificate, sealed once for every
 * device with sealedSenderMultiRecipientEncrypt), and the recipients' side to open a share. The
 * relay's registration ids are the TestDevices'; the recipients' Signal keys live here. The relay
 * seals each share at rest to its account's identity key: to open what it delivers, register the
 * recipients with `registerMember`, whose identity key pairs the GroupSenders use.
 */

/** The identity key pairs of the accounts `registerMember` registered, by account id. */
const memberIdentities = new Map<string, IdentityKeyPair>();

/** A new account on the relay whose identity key is a real one, kept here to open shares. */
export const registerMember = async (baseUrl: string): Promise<TestDevice> => {
  const identity = IdentityKeyPair.generate();
  const device = await TestDevice.register(baseUrl, {
    identityKey: Buffer.from(identity.publicKey.serialize()).toString('base64'),
  });
  memberIdentities.set(device.accountId, identity);
  return device;
};

/**
 * What a recipient device does first with an envelope of type SEALED_SENDER_V2_AT_REST, written
 * here from the format in docs/protocol.md (the engines' code is engine-node/src/at-rest-share.ts
 * and the Kotlin AtRestShare.kt, which the relay's tests do not depend on). Throws when the seal
 * does not open with `identity`.
 */
const openAtRest = (sealed: Buffer, identity: IdentityKeyPair): Buffer => {
  const ephemeral = sealed.subarray(1, 33);
  const secret = identity.privateKey.agree(
    SignalPublicKey.deserialize(new Uint8Array(Buffer.concat([Buffer.of(5), ephemeral]))),
  );
  const salt = Buffer.concat([ephemeral, identity.publicKey.serialize()]);
  const okm = Buffer.from(hkdfSync('sha256', secret, salt, AT_REST_SHARE_INFO, 44));
  const decipher = createDecipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([
    decipher.update(sealed.subarray(33, sealed.length - 16)),
    decipher.final(),
  ]);
};

export interface RecipientDevice {
  readonly deviceId: number;
  readonly registrationId: number;
}
export interface RecipientAccount {
  readonly accountId: string;
  readonly devices: readonly RecipientDevice[];
}

/** An identity store over one key pair and a map of the others' keys. */
const identityStore = (pair: IdentityKeyPair, known: Map<string, PublicKey>): IdentityKeyStore =>
  new (class extends IdentityKeyStore {
    async getIdentityKey() {
      return pair.privateKey;
    }
    async getLocalRegistrationId() {
      return 1;
    }
    async saveIdentity(name: ProtocolAddress, key: PublicKey) {
      known.set(name.name(), key);
      return IdentityChange.NewOrUnchanged;
    }
    async isTrustedIdentity() {
      return true;
    }
    async getIdentity(name: ProtocolAddress) {
      return known.get(name.name()) ?? null;
    }
  })();

class MemorySenderKeys extends SenderKeyStore {
  private readonly records = new Map<string, SenderKeyRecord>();
  async saveSenderKey(sender: ProtocolAddress, id: string, record: SenderKeyRecord) {
    this.records.set(`${sender.toString()}/${id}`, record);
  }
  async getSenderKey(sender: ProtocolAddress, id: string) {
    return this.records.get(`${sender.toString()}/${id}`) ?? null;
  }
}

export class GroupSender {
  readonly identity = IdentityKeyPair.generate();
  readonly distributionId = randomUUID();
  /** Each recipient account's identity key pair, for opening its shares. */
  readonly recipientKeys = new Map<string, IdentityKeyPair>();
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly identities = new Map<string, PublicKey>();
  private readonly senderKeys = new MemorySenderKeys();
  private readonly address: ProtocolAddress;

  constructor(accountId: string, deviceId = 1) {
    this.address = ProtocolAddress.new(accountId, deviceId);
  }

  private sessionStore(): SessionStore {
    const { sessions } = this;
    return new (class extends SessionStore {
      async saveSession(name: ProtocolAddress, record: SessionRecord) {
        sessions.set(name.toString(), record);
      }
      async getSession(name: ProtocolAddress) {
        return sessions.get(name.toString()) ?? null;
      }
      async getExistingSessions(names: ProtocolAddress[]) {
        return names.map((name) => {
          const record = sessions.get(name.toString());
          if (record === undefined) throw new Error(`no session with ${name.toString()}`);
          return record;
        });
      }
    })();
  }

  /** Sessions with every device of `account`, from bundles made here with its registration ids. */
  async addRecipient(account: RecipientAccount): Promise<void> {
    const pair =
      this.recipientKeys.get(account.accountId) ??
      memberIdentities.get(account.accountId) ??
      IdentityKeyPair.generate();
    this.recipientKeys.set(account.accountId, pair);
    for (const device of account.devices) {
      const signed = PrivateKey.generate().getPublicKey();
      const kyber = KEMKeyPair.generate().getPublicKey();
      await processPreKeyBundle(
        PreKeyBundle.new(
          device.registrationId,
          device.deviceId,
          null,
          null,
          1,
          signed,
          pair.privateKey.sign(signed.serialize()),
          pair.publicKey,
          1,
          kyber,
          pair.privateKey.sign(kyber.serialize()),
        ),
        ProtocolAddress.new(account.accountId, device.deviceId),
        this.address,
        this.sessionStore(),
        identityStore(this.identity, this.identities),
      );
    }
  }

  /** The sender key distribution message a recipient needs to open the group messages. */
  async distribution(): Promise<Uint8Array> {
    return (
      await SenderKeyDistributionMessage.create(this.address, this.distributionId, this.senderKeys)
    ).serialize();
  }

  /** One multi-recipient sealed message carrying `plaintext` for every device of `accounts`. */
  async encrypt(
    accounts: readonly RecipientAccount[],
    plaintext: string | Buffer,
  ): Promise<Buffer> {
    await this.distributionAtStart();
    const trustRoot = PrivateKey.generate();
    const server = PrivateKey.generate();
    const certificate = SenderCertificate.new(
      this.address.name(),
      null,
      this.address.deviceId(),
      this.identity.publicKey,
      Date.now() + 86_400_000,
      ServerCertificate.new(1, server.getPublicKey(), trustRoot),
      server,
    );
    const bytes = typeof plaintext === 'string' ? Buffer.from(plaintext) : plaintext;
    const content = UnidentifiedSenderMessageContent.new(
      await groupEncrypt(this.address, this.distributionId, this.senderKeys, new Uint8Array(bytes)),
      certificate,
      ContentHint.Default,
      null,
    );
    return Buffer.from(
      await sealedSenderMultiRecipientEncrypt({
        content,
        recipients: accounts.flatMap((account) =>
          account.devices.map((device) => ProtocolAddress.new(account.accountId, device.deviceId)),
        ),
        identityStore: identityStore(this.identity, this.identities),
        sessionStore: this.sessionStore(),
      }),
    );
  }

  /**
   * What a device of `accountId` reads from its share (as the relay cut it, type 2, or as it
   * delivers it, sealed at rest, type 3): the plaintext, as text.
   */
  async open(accountId: string, envelope: { type: number; content: Buffer }): Promise<string> {
    const pair = this.recipientKeys.get(accountId);
    if (pair === undefined) throw new Error(`${accountId} is no recipient`);
    let share: Buffer;
    if (envelope.type === SEALED_SENDER_V2_AT_REST) share = openAtRest(envelope.content, pair);
    else if (envelope.type === SEALED_SENDER_V2) share = envelope.content;
    else throw new Error(`type ${envelope.type} is no share`);
    const usmc = await sealedSenderDecryptToUsmc(
      new Uint8Array(share),
      identityStore(pair, new Map()),
    );
    const keys = new MemorySenderKeys();
    const sender = ProtocolAddress.new(
      usmc.senderCertificate().senderUuid(),
      usmc.senderCertificate().senderDeviceId(),
    );
    await processSenderKeyDistributionMessage(
      sender,
      SenderKeyDistributionMessage.deserialize(await this.distributionAtStart()),
      keys,
    );
    return Buffer.from(await groupDecrypt(sender, keys, usmc.contents())).toString();
  }

  private start: Uint8Array | undefined;

  /** The distribution message from before the first message: it opens every message since. */
  private async distributionAtStart(): Promise<Uint8Array<ArrayBuffer>> {
    this.start ??= await this.distribution();
    return new Uint8Array(this.start);
  }
}
