import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Address, RemoteBundle, SignalEngine } from '@privcomm/client';
import { deviceIdOf, randomAccountId } from '@privcomm/client/testing';
import { SEALED_SENDER_V1, splitMultiRecipientMessage } from '@privcomm/engine-node';
import {
  ContentHint,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMPublicKey,
  PreKeyBundle,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  SenderKeyDistributionMessage,
  SenderKeyStore,
  ServerCertificate,
  SessionStore,
  UnidentifiedSenderMessageContent,
  groupEncrypt,
  processPreKeyBundle,
  sealedSenderEncrypt,
  signalEncrypt,
  type CiphertextMessage,
  type SenderKeyRecord,
  type SessionRecord,
} from '@signalapp/libsignal-client';
import { KotlinBridge, openKotlinEngine } from '../src/index.ts';
import { newStoreFile } from './support.ts';

/**
 * What the Kotlin engine does beyond the contract, as the Node engine does it
 * (engine-node/test/node-engine.integration.test.ts): its store file and its upgrade from the
 * version before groups, the retirement of replaced prekeys, one transaction per operation.
 */
let bridge: KotlinBridge;
beforeAll(async () => {
  bridge = await KotlinBridge.start();
});
afterAll(async () => {
  await bridge?.stop();
});

// better-sqlite3 ships no types; the tests read the store file directly through it.
interface ReadConnection {
  prepare(sql: string): {
    all(...params: unknown[]): unknown[];
    run(...params: unknown[]): unknown;
  };
  exec(sql: string): void;
  pragma(sql: string, options?: { simple?: boolean }): unknown;
  close(): void;
}
const Database = createRequire(import.meta.url)('better-sqlite3') as new (
  file: string,
  options?: { readonly?: boolean },
) => ReadConnection;

/** Every row of every table of a store file. */
const dump = (file: string): Record<string, unknown[]> => {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as { name: string }[];
    return Object.fromEntries(
      tables.map(({ name }) => [name, db.prepare(`SELECT * FROM "${name}"`).all()]),
    );
  } finally {
    db.close();
  }
};

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const read = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

interface Device {
  engine: SignalEngine;
  address: Address;
  identityKey: Uint8Array;
  registrationId: number;
}

const device = async (engine: SignalEngine, address?: Address): Promise<Device> => {
  const identity = await engine.createIdentity();
  const at = address ?? { accountId: randomAccountId(), deviceId: deviceIdOf(1) };
  await engine.setLocalAddress(at);
  return { engine, address: at, ...identity };
};

const bundleOf = async (
  d: Device,
  options: { preKey?: boolean; lastResort?: boolean } = {},
): Promise<RemoteBundle> => ({
  identityKey: d.identityKey,
  deviceId: d.address.deviceId,
  registrationId: d.registrationId,
  signedPreKey: await d.engine.generateSignedPreKey(),
  ...(options.preKey === false ? {} : { preKey: (await d.engine.generatePreKeys(1))[0]! }),
  kyberPreKey: options.lastResort
    ? await d.engine.generateKyberLastResortPreKey()
    : (await d.engine.generateKyberPreKeys(1))[0]!,
});

const deliver = async (from: Device, to: Device, message: string): Promise<void> => {
  const ciphertext = await from.engine.encrypt(to.address, text(message));
  expect(read((await to.engine.decrypt(randomUUID(), ciphertext)).plaintext)).toBe(message);
};

describe('kotlin engine: store file', () => {
  it('creates the store file readable by its owner only, and keeps everything across reopen', async () => {
    const file = newStoreFile();
    const a = await device(await openKotlinEngine(bridge, file));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const b = await device(await openKotlinEngine(bridge, ':memory:'));
    try {
      await a.engine.processBundle(b.address, await bundleOf(b));
      await deliver(a, b, 'before');
      const envelopeId = randomUUID();
      const reply = await b.engine.encrypt(a.address, text('reply'));
      await a.engine.decrypt(envelopeId, reply);
      await a.engine.close();
      await expect(a.engine.localIdentity()).rejects.toThrow('closed');

      const reopened: Device = { ...a, engine: await openKotlinEngine(bridge, file) };
      expect(await reopened.engine.localIdentity()).toEqual({
        identityKey: a.identityKey,
        registrationId: a.registrationId,
      });
      expect(await reopened.engine.hasSession(b.address)).toBe(true);
      expect(read((await reopened.engine.decrypt(envelopeId, reply)).plaintext)).toBe('reply');
      await deliver(reopened, b, 'after');
      await deliver(b, reopened, 'and back');
      await reopened.engine.close();
    } finally {
      await b.engine.close();
    }
  });
});

/** `from` gives `to` its sender key for `distributionId`, inside a pairwise message. */
const giveSenderKey = async (from: Device, to: Device, distributionId: string): Promise<void> => {
  const message = await from.engine.senderKeyDistribution(distributionId);
  const received = await to.engine.decrypt(
    randomUUID(),
    await from.engine.encrypt(to.address, message),
  );
  await to.engine.processSenderKeyDistribution(received.sender, received.plaintext);
};

/** `from`'s group message for the one recipient `to`: its share, as the relay hands it out. */
const groupShare = async (from: Device, to: Device, distributionId: string, message: string) => {
  const sealed = await from.engine.groupEncrypt(distributionId, [to.address], text(message));
  const [share] = splitMultiRecipientMessage(sealed);
  return share!.ciphertext;
};

describe('kotlin engine: groups in the store file', () => {
  it('keeps sender keys across reopen, and a group message without its key leaves the file unchanged', async () => {
    const file = newStoreFile();
    const a = await device(await openKotlinEngine(bridge, ':memory:'));
    const b = await device(await openKotlinEngine(bridge, file));
    const distributionId = randomUUID();
    try {
      await a.engine.processBundle(b.address, await bundleOf(b));
      await deliver(a, b, 'hello');
      const early = await groupShare(a, b, distributionId, 'before the key');
      const before = dump(file);
      await expect(b.engine.decrypt(randomUUID(), early)).rejects.toMatchObject({
        code: 'NO_SENDER_KEY',
      });
      expect(dump(file)).toEqual(before);

      await giveSenderKey(a, b, distributionId);
      // b's own key, made and kept sealed, and a's key, given to it.
      const ownKey = await b.engine.senderKeyDistribution(randomUUID());
      expect(dump(file).sender_keys).toHaveLength(2);
      await b.engine.close();
      const reopened: Device = { ...b, engine: await openKotlinEngine(bridge, file) };
      try {
        const opened = await reopened.engine.decrypt(randomUUID(), early);
        expect(read(opened.plaintext)).toBe('before the key');
        expect(opened.distributionId).toBe(distributionId);
        const later = await groupShare(a, reopened, distributionId, 'after reopen');
        expect(read((await reopened.engine.decrypt(randomUUID(), later)).plaintext)).toBe(
          'after reopen',
        );
        const [ownId] = (dump(file).sender_key_distributions as { distribution_id: string }[]).map(
          (row) => row.distribution_id,
        );
        expect(await reopened.engine.senderKeyDistribution(ownId!)).toEqual(ownKey);
      } finally {
        await reopened.engine.close();
      }
    } finally {
      await a.engine.close();
    }
  });
});

/**
 * A device made of libsignal's own calls (Node, 0.103), in memory: it seals whatever inner
 * message it is given under a certificate naming any address, as an attacker's client could.
 */
class RawSealer {
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly identities = new Map<string, PublicKey>();
  readonly pair = IdentityKeyPair.generate();
  readonly sessionStore: SessionStore;
  readonly identityStore: IdentityKeyStore;

  constructor(readonly address: ProtocolAddress) {
    const { sessions, identities, pair } = this;
    this.sessionStore = new (class extends SessionStore {
      async saveSession(name: ProtocolAddress, record: SessionRecord) {
        sessions.set(name.toString(), record);
      }
      async getSession(name: ProtocolAddress) {
        return sessions.get(name.toString()) ?? null;
      }
      async getExistingSessions(): Promise<SessionRecord[]> {
        return [];
      }
    })();
    this.identityStore = new (class extends IdentityKeyStore {
      async getIdentityKey() {
        return pair.privateKey;
      }
      async getLocalRegistrationId() {
        return 77;
      }
      async saveIdentity(name: ProtocolAddress, key: PublicKey) {
        identities.set(name.name(), key);
        return IdentityChange.NewOrUnchanged;
      }
      async isTrustedIdentity() {
        return true;
      }
      async getIdentity(name: ProtocolAddress) {
        return identities.get(name.name()) ?? null;
      }
    })();
  }

  /** Starts a session with `to` from its bundle. */
  async connect(to: Device): Promise<ProtocolAddress> {
    const bundle = await bundleOf(to);
    const remote = ProtocolAddress.new(to.address.accountId, to.address.deviceId);
    const key = (bytes: Uint8Array) => PublicKey.deserialize(new Uint8Array(bytes));
    await processPreKeyBundle(
      PreKeyBundle.new(
        bundle.registrationId,
        bundle.deviceId,
        bundle.preKey!.keyId,
        key(bundle.preKey!.publicKey),
        bundle.signedPreKey.keyId,
        key(bundle.signedPreKey.publicKey),
        new Uint8Array(bundle.signedPreKey.signature),
        key(bundle.identityKey),
        bundle.kyberPreKey.keyId,
        KEMPublicKey.deserialize(new Uint8Array(bundle.kyberPreKey.publicKey)),
        new Uint8Array(bundle.kyberPreKey.signature),
      ),
      remote,
      this.address,
      this.sessionStore,
      this.identityStore,
    );
    return remote;
  }

  /** `inner`, sealed (v1) for `to` under a self-issued certificate naming `named` with our key. */
  async seal(inner: CiphertextMessage, named: ProtocolAddress, to: ProtocolAddress) {
    const trustRoot = PrivateKey.generate();
    const server = PrivateKey.generate();
    const certificate = SenderCertificate.new(
      named.name(),
      null,
      named.deviceId(),
      this.pair.publicKey,
      Date.now() + 86_400_000,
      ServerCertificate.new(1, server.getPublicKey(), trustRoot),
      server,
    );
    const content = UnidentifiedSenderMessageContent.new(
      inner,
      certificate,
      ContentHint.Default,
      null,
    );
    return {
      type: SEALED_SENDER_V1,
      content: await sealedSenderEncrypt(content, to, this.identityStore),
    };
  }
}

/** libsignal's SenderKeyStore in memory, for a raw sender. */
class RawSenderKeys extends SenderKeyStore {
  private readonly records = new Map<string, SenderKeyRecord>();
  async saveSenderKey(sender: ProtocolAddress, id: string, record: SenderKeyRecord) {
    this.records.set(`${sender.toString()}/${id}`, record);
  }
  async getSenderKey(sender: ProtocolAddress, id: string) {
    return this.records.get(`${sender.toString()}/${id}`) ?? null;
  }
}

describe('kotlin engine: who sealed a group message', () => {
  it('refuses a genuine group message sealed by another key than its sender identity, leaving the file unchanged', async () => {
    const file = newStoreFile();
    const b = await device(await openKotlinEngine(bridge, file));
    try {
      const senderAddress = { accountId: randomAccountId(), deviceId: deviceIdOf(1) };
      const sender = new RawSealer(ProtocolAddress.new(senderAddress.accountId, 1));
      const toB = await sender.connect(b);
      // b learns the sender's identity from a pairwise message, then gets its sender key.
      const hello = await signalEncrypt(
        new Uint8Array(text('hi')),
        toB,
        sender.address,
        sender.sessionStore,
        sender.identityStore,
      );
      const pairwise = await b.engine.decrypt(
        randomUUID(),
        await sender.seal(hello, sender.address, toB),
      );
      expect(pairwise.sender).toEqual(senderAddress);
      const keys = new RawSenderKeys();
      const distributionId = randomUUID();
      const distribution = await SenderKeyDistributionMessage.create(
        sender.address,
        distributionId,
        keys,
      );
      await b.engine.processSenderKeyDistribution(senderAddress, distribution.serialize());
      const groupMessage = (message: string) =>
        groupEncrypt(sender.address, distributionId, keys, new Uint8Array(text(message)));

      // Sealed by the sender itself: accepted (the construction is right).
      const genuine = await b.engine.decrypt(
        randomUUID(),
        await sender.seal(await groupMessage('ours'), sender.address, toB),
      );
      expect(read(genuine.plaintext)).toBe('ours');
      expect(genuine.sender).toEqual(senderAddress);
      expect(genuine.distributionId).toBe(distributionId);

      // The sender's genuine group message (its sender key signs it), re-sealed by someone with
      // another identity key who names the sender: the group cipher alone would accept it.
      const other = new RawSealer(sender.address);
      const otherToB = await other.connect(b);
      const forged = await other.seal(await groupMessage('re-sealed'), sender.address, otherToB);
      const before = dump(file);
      await expect(b.engine.decrypt(randomUUID(), forged)).rejects.toMatchObject({
        code: 'INVALID_MESSAGE',
      });
      expect(dump(file)).toEqual(before);
    } finally {
      await b.engine.close();
    }
  });
});

describe('kotlin engine: a store from before groups (version 1)', () => {
  it('is upgraded in place when opened: its sessions keep working, and groups work', async () => {
    const file = newStoreFile();
    const a = await device(await openKotlinEngine(bridge, ':memory:'));
    const b = await device(await openKotlinEngine(bridge, file));
    await a.engine.processBundle(b.address, await bundleOf(b));
    const envelopeId = randomUUID();
    const first = await a.engine.encrypt(b.address, text('before the upgrade'));
    await b.engine.decrypt(envelopeId, first);
    await b.engine.close();

    // Take the file back to version 1: the schema the Kotlin engine had before groups.
    const db = new Database(file);
    db.exec(`DROP TABLE sender_keys; DROP TABLE sender_key_distributions;
      ALTER TABLE decrypted DROP COLUMN distribution_id; PRAGMA user_version = 1;`);
    db.close();
    expect(Object.keys(dump(file))).not.toContain('sender_keys');

    const upgraded: Device = { ...b, engine: await openKotlinEngine(bridge, file) };
    try {
      const check = new Database(file, { readonly: true });
      expect(check.pragma('user_version', { simple: true })).toBe(2);
      check.close();
      expect(await upgraded.engine.hasSession(a.address)).toBe(true);
      // What it decrypted before is still kept, as a pairwise message.
      const again = await upgraded.engine.decrypt(envelopeId, first);
      expect(read(again.plaintext)).toBe('before the upgrade');
      expect(again.distributionId).toBeUndefined();
      await deliver(a, upgraded, 'after the upgrade');
      await deliver(upgraded, a, 'and back');
      const distributionId = randomUUID();
      await giveSenderKey(a, upgraded, distributionId);
      const share = await groupShare(a, upgraded, distributionId, 'a group message');
      const opened = await upgraded.engine.decrypt(randomUUID(), share);
      expect(read(opened.plaintext)).toBe('a group message');
      expect(opened.distributionId).toBe(distributionId);
    } finally {
      await Promise.all([a.engine.close(), upgraded.engine.close()]);
    }
  });

  it('refuses a store from a newer engine', async () => {
    const file = newStoreFile();
    const engine = await openKotlinEngine(bridge, file);
    await engine.createIdentity();
    await engine.close();
    const db = new Database(file);
    db.exec('PRAGMA user_version = 3');
    db.close();
    await expect(openKotlinEngine(bridge, file)).rejects.toThrow(
      'unsupported engine store version 3',
    );
  });
});

describe('kotlin engine: replaced long-lived prekeys', () => {
  it('are deleted 60 days after their replacement, and session starts made from them stop working then', async () => {
    const DAY = 24 * 60 * 60 * 1000;
    let now = Date.UTC(2026, 0, 1);
    const file = newStoreFile();
    const bobEngine = await openKotlinEngine(bridge, file, { now });
    const bob = await device(bobEngine);
    const advance = async (days: number) => {
      now += days * DAY;
      await bobEngine.setClock(now);
    };
    const senders = await Promise.all(
      [1, 2, 3].map(async () => device(await openKotlinEngine(bridge, ':memory:'))),
    );
    const [alice, dave, carol] = senders as [Device, Device, Device];
    const rotate = () => bundleOf(bob, { preKey: false, lastResort: true });
    const startWith = async (sender: Device, bundle: RemoteBundle) => {
      await sender.engine.processBundle(bob.address, bundle);
      return sender.engine.encrypt(bob.address, text(`from ${sender.address.accountId}`));
    };
    const idsIn = (table: 'signed_prekeys' | 'kyber_prekeys') =>
      (dump(file)[table] as { id: number }[]).map((row) => row.id).sort((a, b) => a - b);

    try {
      const first = await rotate();
      const fromAlice = await startWith(alice, first);
      const fromDave = await startWith(dave, first);
      await advance(10);
      const second = await rotate();
      const fromCarol = await startWith(carol, second);
      await advance(59);
      const third = await rotate();
      expect(idsIn('signed_prekeys')).toEqual(
        [first, second, third].map((b) => b.signedPreKey.keyId),
      );
      expect(read((await bob.engine.decrypt(randomUUID(), fromAlice)).plaintext)).toContain(
        alice.address.accountId,
      );
      const usesOfFirst = () =>
        (dump(file).kyber_prekey_uses as { kyber_id: number }[]).filter(
          (row) => row.kyber_id === first.kyberPreKey.keyId,
        );
      expect(usesOfFirst()).toHaveLength(1);
      await advance(2);
      const fourth = await rotate();

      const kept = [second, third, fourth];
      expect(idsIn('signed_prekeys')).toEqual(kept.map((b) => b.signedPreKey.keyId));
      expect(idsIn('kyber_prekeys')).toEqual(kept.map((b) => b.kyberPreKey.keyId));
      expect(usesOfFirst()).toEqual([]);
      await expect(bob.engine.decrypt(randomUUID(), fromDave)).rejects.toMatchObject({
        code: 'INVALID_MESSAGE',
      });
      expect(read((await bob.engine.decrypt(randomUUID(), fromCarol)).plaintext)).toContain(
        carol.address.accountId,
      );
    } finally {
      await Promise.all([bob, ...senders].map((d) => d.engine.close()));
    }
  });
});

describe('kotlin engine: one transaction per operation', () => {
  it('leaves the store file unchanged when an operation throws', async () => {
    const file = newStoreFile();
    const a = await device(await openKotlinEngine(bridge, ':memory:'));
    const b = await device(await openKotlinEngine(bridge, file));
    try {
      await a.engine.processBundle(
        b.address,
        await bundleOf(b, { preKey: false, lastResort: true }),
      );
      const first = await a.engine.encrypt(b.address, text('first'));
      await b.engine.decrypt(randomUUID(), first);
      await deliver(b, a, 'answer');
      await b.engine.deleteSession(a.address);

      const before = dump(file);
      expect(before.sessions).toHaveLength(0);
      // The replay reaches markKyberPreKeyUsed, which refuses it after libsignal has worked.
      await expect(b.engine.decrypt(randomUUID(), first)).rejects.toMatchObject({
        code: 'DUPLICATE_MESSAGE',
      });
      expect(dump(file)).toEqual(before);
      await expect(b.engine.createIdentity()).rejects.toMatchObject({ code: 'IDENTITY_EXISTS' });
      await expect(b.engine.encrypt(a.address, text('no session'))).rejects.toMatchObject({
        code: 'NO_SESSION',
      });
      expect(dump(file)).toEqual(before);
    } finally {
      await a.engine.close();
      await b.engine.close();
    }
  });

  it('keeps only the pending identity when a verified account is refused, and sends it nothing', async () => {
    const file = newStoreFile();
    const a = await device(await openKotlinEngine(bridge, file));
    const b = await device(await openKotlinEngine(bridge, ':memory:'));
    const b2 = await device(await openKotlinEngine(bridge, ':memory:'), b.address);
    try {
      await a.engine.processBundle(b.address, await bundleOf(b));
      await deliver(a, b, 'hello');
      await a.engine.setVerified(b.address.accountId, true);
      const before = dump(file);
      await expect(a.engine.processBundle(b.address, await bundleOf(b2))).rejects.toMatchObject({
        code: 'UNTRUSTED_IDENTITY',
      });
      const after = dump(file);
      expect({ ...after, identities: [] }).toEqual({ ...before, identities: [] });
      expect(after.identities).toEqual([
        {
          ...(before.identities?.[0] as object),
          changed: 1,
          pending_key: Buffer.from(b2.identityKey),
        },
      ]);
      // Until the change is accepted, nothing goes to the account, group messages neither.
      await expect(a.engine.encrypt(b.address, text('no'))).rejects.toMatchObject({
        code: 'UNTRUSTED_IDENTITY',
      });
      await expect(
        a.engine.groupEncrypt(randomUUID(), [b.address], text('no')),
      ).rejects.toMatchObject({ code: 'UNTRUSTED_IDENTITY', accountId: b.address.accountId });
    } finally {
      await Promise.all([a.engine.close(), b.engine.close(), b2.engine.close()]);
    }
  });
});

describe('kotlin engine: sealed records', () => {
  it('refuses a sealed record moved to another row: each is bound to its own', async () => {
    const file = newStoreFile();
    const a = await device(await openKotlinEngine(bridge, file));
    const b = await device(await openKotlinEngine(bridge, ':memory:'));
    const c = await device(await openKotlinEngine(bridge, ':memory:'));
    try {
      await a.engine.processBundle(b.address, await bundleOf(b));
      await a.engine.processBundle(c.address, await bundleOf(c));
      await deliver(a, b, 'to b');
      await a.engine.close();

      // Swap the two sealed session records, as someone with write access to the file could.
      const db = new Database(file);
      const rows = db.prepare('SELECT account_id, record FROM sessions').all() as {
        account_id: string;
        record: Buffer;
      }[];
      expect(rows).toHaveLength(2);
      const update = db.prepare('UPDATE sessions SET record = ? WHERE account_id = ?');
      update.run(rows[1]!.record, rows[0]!.account_id);
      update.run(rows[0]!.record, rows[1]!.account_id);
      db.close();

      const reopened = await openKotlinEngine(bridge, file);
      try {
        await expect(reopened.encrypt(b.address, text('to b again'))).rejects.toThrow(
          `the sealed record sessions:${b.address.accountId}.1 cannot be opened`,
        );
        await expect(reopened.encrypt(c.address, text('to c'))).rejects.toThrow('cannot be opened');
      } finally {
        await reopened.close();
      }
    } finally {
      await Promise.all([b.engine.close(), c.engine.close()]);
    }
  });
});
