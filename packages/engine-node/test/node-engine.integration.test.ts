import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionRecord } from '@signalapp/libsignal-client';
import {
  CiphertextMessageType,
  ContentHint,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  KEMPublicKey,
  PreKeyBundle,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  SenderKeyDistributionMessage,
  type SenderKeyRecord,
  SenderKeyStore,
  ServerCertificate,
  SessionStore,
  UnidentifiedSenderMessageContent,
  groupEncrypt,
  processPreKeyBundle,
  sealedSenderDecryptToUsmc,
  sealedSenderEncrypt,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { afterAll, describe, expect, it } from 'vitest';
import { EngineError, type Address, type RemoteBundle, type SignalEngine } from '@privcomm/client';
import { accountIdOf, deviceIdOf, engineContract, randomAccountId } from '@privcomm/client/testing';
import { sealShareAtRest } from '@privcomm/server/testing';
import {
  openNodeEngine,
  SEALED_SENDER_V1,
  SEALED_SENDER_V2,
  splitMultiRecipientMessage,
} from '../src/index.ts';

const directory = mkdtempSync(join(tmpdir(), 'privcomm-engine-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));
const newFile = (): string => join(directory, `${randomUUID()}.sqlite`);

const contractOptions = {
  splitMultiRecipient: splitMultiRecipientMessage,
  sealAtRest: sealShareAtRest,
};
engineContract('node, in memory', () => openNodeEngine(':memory:'), contractOptions);
engineContract('node, SQLite file', () => openNodeEngine(newFile()), contractOptions);

// better-sqlite3 ships no types; the tests read the store file directly through it.
interface ReadConnection {
  prepare(sql: string): { all(): unknown[]; run(...params: unknown[]): unknown };
  pragma(sql: string, options: { simple: true }): unknown;
  exec(sql: string): void;
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

const text = (value: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(value);
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
  { engine, address, identityKey, registrationId }: Device,
  options: { preKey?: boolean; lastResort?: boolean } = {},
): Promise<RemoteBundle> => {
  const preKey = options.preKey === false ? undefined : (await engine.generatePreKeys(1))[0];
  return {
    identityKey,
    deviceId: address.deviceId,
    registrationId,
    signedPreKey: await engine.generateSignedPreKey(),
    ...(preKey === undefined ? {} : { preKey }),
    kyberPreKey: options.lastResort
      ? await engine.generateKyberLastResortPreKey()
      : (await engine.generateKyberPreKeys(1))[0]!,
  };
};

const deliver = async (from: Device, to: Device, message: string, envelopeId = randomUUID()) => {
  const decrypted = await to.engine.decrypt(
    envelopeId,
    await from.engine.encrypt(to.address, text(message)),
  );
  expect(read(decrypted.plaintext)).toBe(message);
  expect(decrypted.sender).toEqual(from.address);
};

/** A plain libsignal client with in-memory stores: what a raw sender or receiver looks like. */
class RawClient {
  readonly sessions = new Map<string, SessionRecord>();
  readonly identities = new Map<string, PublicKey>();
  readonly session: SessionStore;
  readonly identity: IdentityKeyStore;

  constructor(
    readonly pair: IdentityKeyPair,
    readonly address: ProtocolAddress,
  ) {
    const { sessions, identities } = this;
    this.session = new (class extends SessionStore {
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
    this.identity = new (class extends IdentityKeyStore {
      async getIdentityKey() {
        return pair.privateKey;
      }
      async getLocalRegistrationId() {
        return 4242;
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

  async connect(to: Device): Promise<ProtocolAddress> {
    const bundle = await bundleOf(to);
    const remote = ProtocolAddress.new(to.address.accountId, to.address.deviceId);
    await processPreKeyBundle(
      PreKeyBundle.new(
        bundle.registrationId,
        bundle.deviceId,
        bundle.preKey!.keyId,
        PublicKey.deserialize(new Uint8Array(bundle.preKey!.publicKey)),
        bundle.signedPreKey.keyId,
        PublicKey.deserialize(new Uint8Array(bundle.signedPreKey.publicKey)),
        new Uint8Array(bundle.signedPreKey.signature),
        PublicKey.deserialize(new Uint8Array(bundle.identityKey)),
        bundle.kyberPreKey.keyId,
        KEMPublicKey.deserialize(new Uint8Array(bundle.kyberPreKey.publicKey)),
        new Uint8Array(bundle.kyberPreKey.signature),
      ),
      remote,
      this.address,
      this.session,
      this.identity,
    );
    return remote;
  }
}

/** A sender certificate as the engine issues it: self-signed chain, any name, any key. */
const certificate = (accountId: string, deviceId: number, key: PublicKey): SenderCertificate => {
  const trustRoot = PrivateKey.generate();
  const server = PrivateKey.generate();
  return SenderCertificate.new(
    accountId,
    null,
    deviceId,
    key,
    Date.now() + 86_400_000,
    ServerCertificate.new(1, server.getPublicKey(), trustRoot),
    server,
  );
};

describe('node engine: the SQLite file', () => {
  it('is created with mode 0600, whatever the umask, and so is its rollback journal', async () => {
    const file = newFile();
    const previous = process.umask(0);
    try {
      const engine = await openNodeEngine(file);
      await device(engine);
      await engine.generatePreKeys(5);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      for (const suffix of ['-journal', '-wal', '-shm']) {
        expect(existsSync(file + suffix)).toBe(false);
      }
      await engine.close();

      // SQLite gives the journal the database file's mode; watch one exist mid-transaction.
      const db = new Database(file);
      try {
        expect(db.pragma('journal_mode', { simple: true })).toBe('delete');
        db.exec('BEGIN IMMEDIATE');
        db.prepare("INSERT INTO meta (key, value) VALUES ('probe', 1)").run();
        expect(statSync(`${file}-journal`).mode & 0o777).toBe(0o600);
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    } finally {
      process.umask(previous);
    }
  });

  it('tightens an existing file to 0600', async () => {
    const file = newFile();
    writeFileSync(file, '');
    chmodSync(file, 0o644);
    const engine = await openNodeEngine(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await device(engine);
    await engine.close();
  });

  it('keeps identity, sessions, prekeys and decrypted results across close and reopen', async () => {
    const file = newFile();
    const a = await device(await openNodeEngine(file));
    const b = await device(await openNodeEngine(':memory:'));
    await a.engine.processBundle(b.address, await bundleOf(b));
    await deliver(a, b, 'before');
    const envelopeId = randomUUID();
    const reply = await b.engine.encrypt(a.address, text('reply'));
    await a.engine.decrypt(envelopeId, reply);
    await a.engine.setVerified(b.address.accountId, true);
    const earlierIds = (await a.engine.generatePreKeys(10)).map((key) => key.keyId);
    const bundleForLater = await bundleOf(a);
    await a.engine.close();
    await expect(a.engine.localIdentity()).rejects.toThrow('closed');

    const reopened: Device = { ...a, engine: await openNodeEngine(file) };
    try {
      expect(await reopened.engine.localIdentity()).toEqual({
        identityKey: a.identityKey,
        registrationId: a.registrationId,
      });
      expect(await reopened.engine.hasSession(b.address)).toBe(true);
      expect(await reopened.engine.identityState(b.address.accountId)).toMatchObject({
        verified: true,
        changed: false,
      });
      const again = await reopened.engine.decrypt(envelopeId, reply);
      expect(read(again.plaintext)).toBe('reply');
      await deliver(reopened, b, 'after');
      await deliver(b, reopened, 'and back');

      const laterIds = (await reopened.engine.generatePreKeys(10)).map((key) => key.keyId);
      expect(laterIds.filter((id) => earlierIds.includes(id))).toEqual([]);

      // The prekeys published before the restart still work for a new contact.
      const c = await device(await openNodeEngine(':memory:'));
      await c.engine.processBundle(a.address, bundleForLater);
      await deliver(c, reopened, 'hello from c');
      await c.engine.close();
    } finally {
      await reopened.engine.close();
      await b.engine.close();
    }
  });
});

describe('node engine: wipe', () => {
  it("erases the file's keys and sessions: reopened, it is a new engine and holds none of them", async () => {
    const file = newFile();
    const a = await device(await openNodeEngine(file));
    const b = await device(await openNodeEngine(':memory:'));
    await a.engine.processBundle(b.address, await bundleOf(b));
    await deliver(a, b, 'before');
    await a.engine.generatePreKeys(20);
    const bytes = (): Buffer => readFileSync(file);
    const contains = (needle: Uint8Array): boolean => bytes().includes(Buffer.from(needle));
    // Test the test: before the wipe the file holds both identity keys.
    expect(contains(a.identityKey.subarray(1))).toBe(true);
    expect(contains(b.identityKey.subarray(1))).toBe(true);
    const before = bytes().length;

    await a.engine.wipe();
    await expect(a.engine.localIdentity()).rejects.toThrow('closed');
    expect(contains(a.identityKey.subarray(1))).toBe(false);
    expect(contains(b.identityKey.subarray(1))).toBe(false);
    expect(bytes().length).toBeLessThan(before);

    const reopened = await openNodeEngine(file);
    try {
      expect(await reopened.localIdentity()).toBeUndefined();
      expect(await reopened.hasSession(b.address)).toBe(false);
      expect(await reopened.identityState(b.address.accountId)).toBeUndefined();
      await reopened.createIdentity();
    } finally {
      await reopened.close();
      await b.engine.close();
    }
  });
});

describe('node engine: replaced long-lived prekeys', () => {
  it('are deleted 60 days after their replacement, and session starts made from them stop working then', async () => {
    const DAY = 24 * 60 * 60 * 1000;
    let now = Date.UTC(2026, 0, 1);
    const file = newFile();
    const bob = await device(await openNodeEngine(file, { now: () => now }));
    const senders = await Promise.all(
      ['alice', 'dave', 'carol'].map(async () => device(await openNodeEngine(':memory:'))),
    );
    const [alice, dave, carol] = senders as [Device, Device, Device];
    // No one-time prekeys: every session start rests on the signed and last-resort keys.
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
      now += 10 * DAY;
      const second = await rotate();
      const fromCarol = await startWith(carol, second);
      now += 59 * DAY;
      // The first keys were replaced 59 days ago: still there, and Alice's start still opens.
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
      now += 2 * DAY;
      const fourth = await rotate();

      // 61 days after their replacement the first keys are gone; the second (replaced two days
      // ago) and later ones stay.
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

describe('node engine: one transaction per operation', () => {
  it('leaves the store file unchanged when an operation throws', async () => {
    const file = newFile();
    const a = await device(await openNodeEngine(':memory:'));
    const b = await device(await openNodeEngine(file));
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
      // The replay reaches markKyberPreKeyUsed, which refuses it. (A failure after libsignal
      // has written is in 'refuses a sealed message whose certificate key ...' below.)
      await expect(b.engine.decrypt(randomUUID(), first)).rejects.toMatchObject({
        code: 'DUPLICATE_MESSAGE',
      });
      expect(dump(file)).toEqual(before);

      const tampered = new Uint8Array(first.content);
      tampered[100] = (tampered[100] as number) ^ 0xff;
      await expect(
        b.engine.decrypt(randomUUID(), { ...first, content: tampered }),
      ).rejects.toBeInstanceOf(EngineError);
      await expect(b.engine.createIdentity()).rejects.toMatchObject({ code: 'IDENTITY_EXISTS' });
      const forged = await bundleOf(a);
      await expect(
        b.engine.processBundle(a.address, {
          ...forged,
          signedPreKey: { ...forged.signedPreKey, signature: new Uint8Array(64) },
        }),
      ).rejects.toMatchObject({ code: 'INVALID_MESSAGE' });
      await expect(b.engine.encrypt(a.address, text('no session'))).rejects.toMatchObject({
        code: 'NO_SESSION',
      });
      expect(dump(file)).toEqual(before);
    } finally {
      await a.engine.close();
      await b.engine.close();
    }
  });

  it('keeps only the pending identity when a verified account is refused', async () => {
    const file = newFile();
    const a = await device(await openNodeEngine(file));
    const b = await device(await openNodeEngine(':memory:'));
    const b2 = await device(await openNodeEngine(':memory:'), b.address);
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
    } finally {
      await Promise.all([a.engine.close(), b.engine.close(), b2.engine.close()]);
    }
  });

  it('runs concurrent operations one at a time', async () => {
    const a = await device(await openNodeEngine(newFile()));
    const b = await device(await openNodeEngine(':memory:'));
    try {
      await a.engine.processBundle(b.address, await bundleOf(b));
      await deliver(a, b, 'start');
      const ciphertexts = await Promise.all(
        Array.from({ length: 20 }, (_, i) => a.engine.encrypt(b.address, text(`m${i}`))),
      );
      const decrypted = await Promise.all(
        ciphertexts.map((ciphertext) => b.engine.decrypt(randomUUID(), ciphertext)),
      );
      expect(decrypted.map((d) => read(d.plaintext))).toEqual(
        Array.from({ length: 20 }, (_, i) => `m${i}`),
      );
      const ids = (
        await Promise.all(Array.from({ length: 10 }, () => a.engine.generatePreKeys(3)))
      ).flatMap((keys) => keys.map((key) => key.keyId));
      expect(new Set(ids).size).toBe(30);
    } finally {
      await a.engine.close();
      await b.engine.close();
    }
  });
});

describe('node engine: libsignal formats', () => {
  it('signs signed and Kyber prekeys over their serialised public keys (PublicKey.verify)', async () => {
    const a = await device(await openNodeEngine(':memory:'));
    try {
      const identity = PublicKey.deserialize(new Uint8Array(a.identityKey));
      const signed = [
        await a.engine.generateSignedPreKey(),
        ...(await a.engine.generateKyberPreKeys(3)),
        await a.engine.generateKyberLastResortPreKey(),
      ];
      for (const key of signed) {
        const message = new Uint8Array(key.publicKey);
        expect(identity.verify(message, new Uint8Array(key.signature))).toBe(true);
        const tampered = new Uint8Array(key.signature);
        tampered[0] = (tampered[0] as number) ^ 1;
        expect(identity.verify(message, tampered)).toBe(false);
      }
      const other = IdentityKeyPair.generate().publicKey;
      const [first] = signed;
      expect(other.verify(new Uint8Array(first!.publicKey), new Uint8Array(first!.signature))).toBe(
        false,
      );
    } finally {
      await a.engine.close();
    }
  });

  it('seals with a self-issued certificate naming its address and identity key', async () => {
    const a = await device(await openNodeEngine(':memory:'), {
      accountId: randomAccountId(),
      deviceId: deviceIdOf(3),
    });
    const receiver = new RawClient(
      IdentityKeyPair.generate(),
      ProtocolAddress.new(randomUUID(), 1),
    );
    const to = { accountId: accountIdOf(receiver.address.name()), deviceId: deviceIdOf(1) };
    try {
      // A bundle made with libsignal directly, so that a plain libsignal client receives.
      const { privateKey } = receiver.pair;
      const signedPreKey = PrivateKey.generate().getPublicKey().serialize();
      const kyberPreKey = KEMKeyPair.generate().getPublicKey().serialize();
      await a.engine.processBundle(to, {
        identityKey: receiver.pair.publicKey.serialize(),
        deviceId: deviceIdOf(1),
        registrationId: 4242,
        signedPreKey: {
          keyId: 1,
          publicKey: signedPreKey,
          signature: privateKey.sign(signedPreKey),
        },
        kyberPreKey: { keyId: 1, publicKey: kyberPreKey, signature: privateKey.sign(kyberPreKey) },
      });
      const sealed = await a.engine.encrypt(to, text('hi'));
      expect(sealed.type).toBe(SEALED_SENDER_V1);
      expect(sealed.registrationId).toBe(4242);
      const content = await sealedSenderDecryptToUsmc(
        new Uint8Array(sealed.content),
        receiver.identity,
      );
      const sender = content.senderCertificate();
      expect(sender.senderUuid()).toBe(a.address.accountId);
      expect(sender.senderDeviceId()).toBe(3);
      expect(sender.key().serialize()).toEqual(new Uint8Array(a.identityKey));
      expect(sender.expiration()).toBeGreaterThan(Date.now() + 50 * 365 * 86_400_000);
      expect(content.msgType()).toBe(CiphertextMessageType.PreKey);
      expect(content.contentHint()).toBe(ContentHint.Default);
    } finally {
      await a.engine.close();
    }
  });

  /** A PreKey message from `inner`'s identity to `to`, sealed by `sealer` with its certificate. */
  const seal = async (to: Device, inner: RawClient, sealer: RawClient) => {
    const remote = await inner.connect(to);
    sealer.identities.set(remote.name(), PublicKey.deserialize(new Uint8Array(to.identityKey)));
    const message = await signalEncrypt(
      text('hi'),
      remote,
      inner.address,
      inner.session,
      inner.identity,
    );
    const content = UnidentifiedSenderMessageContent.new(
      message,
      certificate(inner.address.name(), inner.address.deviceId(), sealer.pair.publicKey),
      ContentHint.Default,
      null,
    );
    return {
      type: SEALED_SENDER_V1,
      content: await sealedSenderEncrypt(content, remote, sealer.identity),
    };
  };

  const rawClient = (accountId: string = randomUUID()): RawClient =>
    new RawClient(IdentityKeyPair.generate(), ProtocolAddress.new(accountId, 1));

  it('refuses a sealed message whose certificate key is not the identity of its session', async () => {
    const file = newFile();
    const b = await device(await openNodeEngine(file));
    try {
      // Sealed under the identity of its session: accepted (the construction is right).
      const honest = rawClient();
      const genuine = await b.engine.decrypt(randomUUID(), await seal(b, honest, honest));
      expect(read(genuine.plaintext)).toBe('hi');
      expect(genuine.sender).toEqual({ accountId: honest.address.name(), deviceId: 1 });

      // Sealed by another key than the session's. libsignal decrypts the inner message (and
      // writes the session and the identity) before the engine compares the keys: the refusal
      // must take all of it back.
      const inner = rawClient();
      const outer = new RawClient(IdentityKeyPair.generate(), inner.address);
      const forged = await seal(b, inner, outer);
      const before = dump(file);
      await expect(b.engine.decrypt(randomUUID(), forged)).rejects.toMatchObject({
        code: 'INVALID_MESSAGE',
      });
      expect(dump(file)).toEqual(before);
      expect(await b.engine.identityState(accountIdOf(inner.address.name()))).toBeUndefined();
    } finally {
      await b.engine.close();
    }
  });

  it('refuses a sender certificate that spells a known account id differently', async () => {
    const file = newFile();
    const b = await device(await openNodeEngine(file));
    try {
      const known = rawClient();
      await b.engine.decrypt(randomUUID(), await seal(b, known, known));
      await b.engine.setVerified(accountIdOf(known.address.name()), true);

      const impostor = rawClient(known.address.name().toUpperCase());
      const message = await seal(b, impostor, impostor);
      const before = dump(file);
      await expect(b.engine.decrypt(randomUUID(), message)).rejects.toMatchObject({
        code: 'INVALID_MESSAGE',
      });
      expect(dump(file)).toEqual(before);
    } finally {
      await b.engine.close();
    }
  });
});

describe('node engine: groups', () => {
  const newDistributionId = (): string => randomUUID();

  /** `from` hands its key to `to`, as the caller does after a pairwise message. */
  const giveKey = async (from: Device, to: Device, distributionId: string) => {
    const message = await from.engine.senderKeyDistribution(distributionId);
    const received = await to.engine.decrypt(
      randomUUID(),
      await from.engine.encrypt(to.address, message),
    );
    await to.engine.processSenderKeyDistribution(received.sender, received.plaintext);
  };

  const groupSend = async (from: Device, to: Device[], distributionId: string, message: string) => {
    const sealed = await from.engine.groupEncrypt(
      distributionId,
      to.map((d) => d.address),
      text(message),
    );
    expect(sealed.type).toBe(SEALED_SENDER_V2);
    const shares = splitMultiRecipientMessage(sealed);
    for (const recipient of to) {
      const share = shares.find(
        (s) =>
          s.address.accountId === recipient.address.accountId &&
          s.address.deviceId === recipient.address.deviceId,
      );
      expect(share?.registrationId).toBe(recipient.registrationId);
      const opened = await recipient.engine.decrypt(randomUUID(), share!.ciphertext);
      expect(read(opened.plaintext)).toBe(message);
      expect(opened.distributionId).toBe(distributionId);
    }
  };

  it('keeps sender keys, its own first distribution message and group results across close and reopen', async () => {
    const aFile = newFile();
    const bFile = newFile();
    const a = await device(await openNodeEngine(aFile));
    let b = await device(await openNodeEngine(bFile));
    const d = newDistributionId();
    await a.engine.processBundle(b.address, await bundleOf(b));
    await giveKey(a, b, d);
    const distribution = await a.engine.senderKeyDistribution(d);
    await groupSend(a, [b], d, 'before');
    const envelopeId = randomUUID();
    const kept = splitMultiRecipientMessage(
      await a.engine.groupEncrypt(d, [b.address], text('kept')),
    )[0]!.ciphertext;
    await b.engine.decrypt(envelopeId, kept);
    await a.engine.close();
    await b.engine.close();

    const reopenedA: Device = { ...a, engine: await openNodeEngine(aFile) };
    b = { ...b, engine: await openNodeEngine(bFile) };
    try {
      expect(await reopenedA.engine.senderKeyDistribution(d)).toEqual(distribution);
      // The chain went on from where it was: a store that lost it would repeat an iteration,
      // which b refuses as a duplicate.
      await groupSend(reopenedA, [b], d, 'after');
      const again = await b.engine.decrypt(envelopeId, kept);
      expect(read(again.plaintext)).toBe('kept');
      expect(again.distributionId).toBe(d);
      const rows = dump(aFile);
      expect(rows.sender_keys).toHaveLength(1);
      expect(rows.sender_key_distributions).toHaveLength(1);
    } finally {
      await reopenedA.engine.close();
      await b.engine.close();
    }
  });

  it('brings a version 1 store (before groups) to version 2, keeping its sessions', async () => {
    const file = newFile();
    const a = await device(await openNodeEngine(file));
    const b = await device(await openNodeEngine(':memory:'));
    try {
      await a.engine.processBundle(b.address, await bundleOf(b));
      await deliver(a, b, 'before the upgrade');
      await a.engine.close();
      // What a store made before groups looks like.
      const db = new Database(file);
      db.exec(
        `DROP TABLE sender_keys; DROP TABLE sender_key_distributions;
         ALTER TABLE decrypted DROP COLUMN distribution_id; PRAGMA user_version = 1;`,
      );
      db.close();

      const upgraded: Device = { ...a, engine: await openNodeEngine(file) };
      try {
        await deliver(upgraded, b, 'after the upgrade');
        const d = newDistributionId();
        await giveKey(upgraded, b, d);
        await groupSend(upgraded, [b], d, 'first group message');
      } finally {
        await upgraded.engine.close();
      }
      const check = new Database(file, { readonly: true });
      try {
        expect(check.pragma('user_version', { simple: true })).toBe(2);
      } finally {
        check.close();
      }
    } finally {
      await b.engine.close();
    }
  });

  /** libsignal's SenderKeyStore in memory, for a raw sender. */
  class RawSenderKeys extends SenderKeyStore {
    readonly records = new Map<string, SenderKeyRecord>();
    async saveSenderKey(sender: ProtocolAddress, id: string, record: SenderKeyRecord) {
      this.records.set(`${sender.toString()}/${id}`, record);
    }
    async getSenderKey(sender: ProtocolAddress, id: string) {
      return this.records.get(`${sender.toString()}/${id}`) ?? null;
    }
  }

  it('refuses a genuine group message sealed by another key than its sender identity', async () => {
    const file = newFile();
    const b = await device(await openNodeEngine(file));
    try {
      const identity = IdentityKeyPair.generate();
      const sender = new RawClient(identity, ProtocolAddress.new(randomUUID(), 1));
      const remote = await sender.connect(b);
      sender.identities.set(remote.name(), PublicKey.deserialize(new Uint8Array(b.identityKey)));
      const senderAddress = {
        accountId: accountIdOf(sender.address.name()),
        deviceId: deviceIdOf(1),
      };
      // b learns the sender's identity from a pairwise message, then gets its sender key.
      const hello = await signalEncrypt(
        text('hi'),
        remote,
        sender.address,
        sender.session,
        sender.identity,
      );
      const sealHello = UnidentifiedSenderMessageContent.new(
        hello,
        certificate(sender.address.name(), 1, identity.publicKey),
        ContentHint.Default,
        null,
      );
      await b.engine.decrypt(randomUUID(), {
        type: SEALED_SENDER_V1,
        content: await sealedSenderEncrypt(sealHello, remote, sender.identity),
      });
      const keys = new RawSenderKeys();
      const d = newDistributionId();
      const distribution = await SenderKeyDistributionMessage.create(sender.address, d, keys);
      await b.engine.processSenderKeyDistribution(senderAddress, distribution.serialize());

      /** A group message from the sender, sealed by `sealer` under a certificate naming the sender. */
      const groupMessage = async (message: string, sealer: RawClient) => {
        sealer.identities.set(remote.name(), PublicKey.deserialize(new Uint8Array(b.identityKey)));
        const content = UnidentifiedSenderMessageContent.new(
          await groupEncrypt(sender.address, d, keys, text(message)),
          certificate(sender.address.name(), 1, sealer.pair.publicKey),
          ContentHint.Default,
          null,
        );
        return {
          type: SEALED_SENDER_V1,
          content: await sealedSenderEncrypt(content, remote, sealer.identity),
        };
      };
      // Sealed by the sender itself: accepted (the construction is right).
      const genuine = await b.engine.decrypt(randomUUID(), await groupMessage('ours', sender));
      expect(read(genuine.plaintext)).toBe('ours');
      expect(genuine.sender).toEqual(senderAddress);
      expect(genuine.distributionId).toBe(d);

      // The sender's genuine group message (its sender key signs it), re-sealed by someone else
      // who names the sender: libsignal's groupDecrypt alone would accept it.
      const other = new RawClient(IdentityKeyPair.generate(), sender.address);
      const forged = await groupMessage('re-sealed', other);
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
