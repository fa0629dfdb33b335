import { afterEach, describe, expect, it } from 'vitest';
import { equalBytes, utf8Decode, utf8Encode } from '../bytes.ts';
import {
  EngineError,
  NoSenderKeyError,
  UntrustedIdentityError,
  type Address,
  type Ciphertext,
  type DistributionId,
  type LocalIdentity,
  type MultiRecipientMessage,
  type PublicSignedPreKey,
  type RemoteBundle,
  type SignalEngine,
} from '../engine.ts';
import { SEALED_SENDER_V2_AT_REST } from '@privcomm/wire';
import { deviceIdOf, randomAccountId } from './ids.ts';

/**
 * The behaviour every SignalEngine must have, whatever its platform: run it against each
 * implementation (`engineContract('node', () => openNodeEngine(':memory:'), { splitMultiRecipient })`).
 * `open` must give a new, empty engine each time. The suite uses only the SignalEngine interface,
 * so it also runs where libsignal is native code behind a bridge.
 */

/** One device's share of a multi-recipient message, as the relay hands it out. */
export interface MultiRecipientShare {
  readonly address: Address;
  readonly registrationId: number;
  readonly ciphertext: Ciphertext;
}

export interface EngineContractOptions {
  /**
   * Splits a multi-recipient message (groupEncrypt) into each device's share, as the relay does.
   * This package does not depend on libsignal: pass `splitMultiRecipientMessage` from
   * @privcomm/engine-node (libsignal's SealedSenderMultiRecipientMessage), whatever the engine.
   */
  readonly splitMultiRecipient: (message: MultiRecipientMessage) => MultiRecipientShare[];
  /**
   * Seals a share to an account's identity key (33 bytes, as published) as the relay does before
   * it stores it (SEALED_SENDER_V2_AT_REST): pass `sealShareAtRest` from @privcomm/server/testing,
   * the relay's own code.
   */
  readonly sealAtRest: (share: Uint8Array, identityKey: Uint8Array) => Uint8Array;
}

type Code = EngineError['code'];

/**
 * Resolves to the EngineError the operation fails with; fails the test if it succeeds. Takes a
 * function too: an engine may refuse an argument before it returns a promise.
 */
const failure = async (
  operation: Promise<unknown> | (() => Promise<unknown>),
): Promise<EngineError> => {
  try {
    await (typeof operation === 'function' ? operation() : operation);
  } catch (error) {
    expect(error).toBeInstanceOf(EngineError);
    return error as EngineError;
  }
  return expect.fail('the operation was expected to fail');
};

const expectCode = async (
  operation: Promise<unknown> | (() => Promise<unknown>),
  code: Code,
): Promise<EngineError> => {
  const error = await failure(operation);
  expect(error.code).toBe(code);
  return error;
};

const expectUntrusted = async (operation: Promise<unknown>, accountId: string): Promise<void> => {
  const error = await expectCode(operation, 'UNTRUSTED_IDENTITY');
  expect(error).toBeInstanceOf(UntrustedIdentityError);
  expect((error as UntrustedIdentityError).accountId).toBe(accountId);
};

const flipBit = (bytes: Uint8Array, index: number): Uint8Array => {
  const copy = new Uint8Array(bytes);
  copy[index] = (copy[index] as number) ^ 0x01;
  return copy;
};

const contains = (haystack: Uint8Array, needle: Uint8Array): boolean => {
  for (let i = 0; i + needle.length <= haystack.length; i += 1) {
    if (equalBytes(haystack.subarray(i, i + needle.length), needle)) return true;
  }
  return false;
};

const text = (value: string): Uint8Array => utf8Encode(value);

/** An argument the engine refuses before it runs anything: a TypeError or RangeError. */
const expectArgumentError = async (operation: () => Promise<unknown>): Promise<void> => {
  try {
    await operation();
  } catch (error) {
    expect(error).not.toBeInstanceOf(EngineError);
    expect(error).toBeInstanceOf(Error);
    expect(['TypeError', 'RangeError']).toContain((error as Error).name);
    return;
  }
  expect.fail('the operation was expected to refuse its argument');
};

const expectNoSenderKey = async (
  operation: Promise<unknown>,
  sender: Address,
  distributionId: DistributionId,
): Promise<void> => {
  const error = await expectCode(operation, 'NO_SENDER_KEY');
  expect(error).toBeInstanceOf(NoSenderKeyError);
  expect((error as NoSenderKeyError).sender).toEqual(sender);
  expect((error as NoSenderKeyError).distributionId).toBe(distributionId);
};

const newDistributionId = (): DistributionId => globalThis.crypto.randomUUID();

export const engineContract = (
  name: string,
  open: () => Promise<SignalEngine>,
  { splitMultiRecipient, sealAtRest }: EngineContractOptions,
): void => {
  describe(`SignalEngine contract: ${name}`, () => {
    const opened: SignalEngine[] = [];
    let envelopeCounter = 0;

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((engine) => engine.close()));
    });

    const openEngine = async (): Promise<SignalEngine> => {
      const engine = await open();
      opened.push(engine);
      return engine;
    };

    interface Device {
      engine: SignalEngine;
      address: Address;
      identity: LocalIdentity;
    }

    /** A device with a new identity at `address` (a new account unless given). */
    const newDevice = async (address?: Address): Promise<Device> => {
      const engine = await openEngine();
      const identity = await engine.createIdentity();
      const at = address ?? { accountId: randomAccountId(), deviceId: deviceIdOf(1) };
      await engine.setLocalAddress(at);
      return { engine, address: at, identity };
    };

    /** A device of the same account as `primary`, linked by provisioning. */
    const linkDevice = async (primary: Device, deviceId: number): Promise<Device> => {
      const engine = await openEngine();
      const key = await engine.createProvisioningKey();
      await engine.openProvisioning(await primary.engine.sealProvisioning(key, text('link')));
      const address = { accountId: primary.address.accountId, deviceId: deviceIdOf(deviceId) };
      await engine.setLocalAddress(address);
      const identity = await engine.localIdentity();
      if (identity === undefined) return expect.fail('the linked device has no identity');
      return { engine, address, identity };
    };

    const bundleOf = async (
      device: Device,
      options: { preKey?: boolean; lastResort?: boolean } = {},
    ): Promise<RemoteBundle> => {
      const { engine, identity, address } = device;
      const kyberPreKey: PublicSignedPreKey = options.lastResort
        ? await engine.generateKyberLastResortPreKey()
        : ((await engine.generateKyberPreKeys(1))[0] as PublicSignedPreKey);
      const preKey = options.preKey === false ? undefined : (await engine.generatePreKeys(1))[0];
      return {
        identityKey: identity.identityKey,
        deviceId: address.deviceId,
        registrationId: identity.registrationId,
        signedPreKey: await engine.generateSignedPreKey(),
        ...(preKey === undefined ? {} : { preKey }),
        kyberPreKey,
      };
    };

    /** `from` starts a session with `to` from a fresh bundle. */
    const connect = async (from: Device, to: Device, options = {}): Promise<void> => {
      await from.engine.processBundle(to.address, await bundleOf(to, options));
    };

    const nextEnvelopeId = (): string => {
      envelopeCounter += 1;
      return `00000000-0000-4000-8000-${envelopeCounter.toString(16).padStart(12, '0')}`;
    };

    /** Sends `message` from one device to another and checks what the recipient gets. */
    const deliver = async (from: Device, to: Device, message: string): Promise<void> => {
      const ciphertext = await from.engine.encrypt(to.address, text(message));
      const decrypted = await to.engine.decrypt(nextEnvelopeId(), ciphertext);
      expect(utf8Decode(decrypted.plaintext)).toBe(message);
      expect(decrypted.sender).toEqual(from.address);
    };

    describe('identity', () => {
      it('has no identity until one is created, and refuses to create a second', async () => {
        const engine = await openEngine();
        expect(await engine.localIdentity()).toBeUndefined();
        const identity = await engine.createIdentity();
        expect(identity.identityKey).toBeInstanceOf(Uint8Array);
        expect(identity.identityKey.length).toBe(33);
        expect(Number.isInteger(identity.registrationId)).toBe(true);
        expect(identity.registrationId).toBeGreaterThanOrEqual(1);
        expect(identity.registrationId).toBeLessThanOrEqual(16380);
        expect(await engine.localIdentity()).toEqual(identity);

        await expectCode(engine.createIdentity(), 'IDENTITY_EXISTS');
        expect(await engine.localIdentity()).toEqual(identity);
      });

      it('wipes what it keeps and closes: a session peer then needs a new one', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        await deliver(a, b, 'before the wipe');
        await b.engine.wipe();
        // Closed: nothing more is answered, and closing again (as callers do) is harmless.
        await expect(b.engine.localIdentity()).rejects.toThrow();
        await expect(b.engine.hasSession(a.address)).rejects.toThrow();
        await b.engine.close();
        // a's session with the wiped device stays a's own: a can still encrypt to it.
        expect(await a.engine.hasSession(b.address)).toBe(true);
      });

      it('gives every device its own identity key', async () => {
        const a = await newDevice();
        const b = await newDevice();
        expect(equalBytes(a.identity.identityKey, b.identity.identityKey)).toBe(false);
      });

      it('refuses key generation and provisioning without an identity', async () => {
        const engine = await openEngine();
        await expectCode(engine.generatePreKeys(1), 'NO_IDENTITY');
        await expectCode(engine.generateKyberPreKeys(1), 'NO_IDENTITY');
        await expectCode(engine.generateSignedPreKey(), 'NO_IDENTITY');
        await expectCode(engine.generateKyberLastResortPreKey(), 'NO_IDENTITY');
        const other = await openEngine();
        await expectCode(
          engine.sealProvisioning(await other.createProvisioningKey(), text('x')),
          'NO_IDENTITY',
        );
      });
    });

    describe('prekeys', () => {
      it('gives fresh ids to the prekeys of each kind across calls', async () => {
        const device = await newDevice();
        const { engine } = device;
        const preKeys = [
          ...(await engine.generatePreKeys(20)),
          ...(await engine.generatePreKeys(20)),
        ];
        expect(preKeys).toHaveLength(40);
        expect(new Set(preKeys.map((key) => key.keyId)).size).toBe(40);
        for (const key of preKeys) {
          expect(key.keyId).toBeGreaterThanOrEqual(0);
          expect(key.keyId).toBeLessThanOrEqual(0xffffff);
          expect(key.publicKey.length).toBe(33);
        }
        const publicKeys = new Set(preKeys.map((key) => key.publicKey.join(',')));
        expect(publicKeys.size).toBe(40);

        // One-time and last-resort Kyber prekeys share one id space.
        const kyber = [
          ...(await engine.generateKyberPreKeys(5)),
          await engine.generateKyberLastResortPreKey(),
          ...(await engine.generateKyberPreKeys(5)),
          await engine.generateKyberLastResortPreKey(),
        ];
        expect(new Set(kyber.map((key) => key.keyId)).size).toBe(12);
        for (const key of kyber) {
          expect(key.publicKey.length).toBeGreaterThan(1000);
          expect(key.signature.length).toBe(64);
        }

        const signed = [
          await engine.generateSignedPreKey(),
          await engine.generateSignedPreKey(),
          await engine.generateSignedPreKey(),
        ];
        expect(new Set(signed.map((key) => key.keyId)).size).toBe(3);
        for (const key of signed) {
          expect(key.publicKey.length).toBe(33);
          expect(key.signature.length).toBe(64);
        }
        expect(await engine.generatePreKeys(0)).toEqual([]);
      });

      it('signs signed and Kyber prekeys with the identity key: other engines check them', async () => {
        const a = await newDevice();
        const b = await newDevice();
        const stranger = await newDevice();
        const bundle = await bundleOf(b);
        const foreign = await bundleOf(stranger);
        const forged: RemoteBundle[] = [
          {
            ...bundle,
            signedPreKey: {
              ...bundle.signedPreKey,
              signature: flipBit(bundle.signedPreKey.signature, 5),
            },
          },
          {
            ...bundle,
            kyberPreKey: {
              ...bundle.kyberPreKey,
              signature: flipBit(bundle.kyberPreKey.signature, 5),
            },
          },
          // Keys signed by another identity.
          { ...bundle, signedPreKey: foreign.signedPreKey },
          { ...bundle, kyberPreKey: foreign.kyberPreKey },
        ];
        for (const candidate of forged) {
          await expectCode(a.engine.processBundle(b.address, candidate), 'INVALID_MESSAGE');
          expect(await a.engine.hasSession(b.address)).toBe(false);
        }
        await a.engine.processBundle(b.address, bundle);
        expect(await a.engine.hasSession(b.address)).toBe(true);
      });
    });

    describe('sessions and messages', () => {
      it('starts with a PreKey message, continues both ways, and names the sender', async () => {
        const a = await newDevice();
        const b = await newDevice();
        expect(await a.engine.hasSession(b.address)).toBe(false);
        await expectCode(a.engine.encrypt(b.address, text('too early')), 'NO_SESSION');

        await connect(a, b);
        expect(await a.engine.hasSession(b.address)).toBe(true);
        expect(await a.engine.sessionDeviceIds(b.address.accountId)).toEqual([1]);

        const marker = 'first message 7f3a9c';
        const first = await a.engine.encrypt(b.address, text(marker));
        expect(first.registrationId).toBe(b.identity.registrationId);
        expect(Number.isInteger(first.type)).toBe(true);
        // Sealed: neither the plaintext nor the sender's account id or key is visible.
        expect(contains(first.content, text(marker))).toBe(false);
        expect(contains(first.content, text(a.address.accountId))).toBe(false);
        expect(contains(first.content, a.identity.identityKey)).toBe(false);

        const received = await b.engine.decrypt(nextEnvelopeId(), first);
        expect(utf8Decode(received.plaintext)).toBe(marker);
        expect(received.sender).toEqual(a.address);
        expect(await b.engine.hasSession(a.address)).toBe(true);

        await deliver(b, a, 'reply');
        for (let round = 0; round < 10; round += 1) {
          for (let k = 0; k <= round % 3; k += 1) await deliver(a, b, `a ${round}.${k}`);
          for (let k = 0; k <= (round + 1) % 3; k += 1) await deliver(b, a, `b ${round}.${k}`);
        }
        const reply = await b.engine.encrypt(a.address, text('x'));
        expect(reply.registrationId).toBe(a.identity.registrationId);
      });

      it('asks the caller to confirm a new sender key before committing anything', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        const first = await a.engine.encrypt(b.address, text('who am I'));
        const asked: string[] = [];
        await expectCode(
          b.engine.decrypt(nextEnvelopeId(), first, {
            confirmIdentity: async (accountId, identityKey) => {
              asked.push(accountId);
              expect(identityKey).toEqual(a.identity.identityKey);
              return false;
            },
          }),
          'UNCONFIRMED_IDENTITY',
        );
        expect(asked).toEqual([a.address.accountId]);
        // Refused: nothing of the sender was kept, and the same message decrypts once confirmed.
        expect(await b.engine.identityState(a.address.accountId)).toBeUndefined();
        expect(await b.engine.hasSession(a.address)).toBe(false);
        const accepted = await b.engine.decrypt(nextEnvelopeId(), first, {
          confirmIdentity: async () => true,
        });
        expect(utf8Decode(accepted.plaintext)).toBe('who am I');
        // A key already known is not asked about again.
        const second = await a.engine.encrypt(b.address, text('again'));
        await b.engine.decrypt(nextEnvelopeId(), second, {
          confirmIdentity: async () => {
            throw new Error('must not be asked for a known key');
          },
        });
      });

      it('keeps the store free while the caller confirms a key: other operations go on', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        const first = await a.engine.encrypt(b.address, text('meanwhile'));
        let during: string | undefined;
        const decrypted = await b.engine.decrypt(nextEnvelopeId(), first, {
          // The client core asks the relay here: the engine must not wait on it with its store held.
          confirmIdentity: async () => {
            const other = b.engine.generatePreKeys(1).then(() => 'done');
            const stuck = new Promise<string>((resolve) =>
              setTimeout(() => resolve('stuck'), 3_000),
            );
            during = await Promise.race([other, stuck]);
            return true;
          },
        });
        expect(during).toBe('done');
        expect(utf8Decode(decrypted.plaintext)).toBe('meanwhile');
      });

      it('decrypts messages delivered out of order, across ratchet steps', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        const sent: { ciphertext: Ciphertext; message: string }[] = [];
        const send = async (message: string) =>
          sent.push({ ciphertext: await a.engine.encrypt(b.address, text(message)), message });
        await send('m0');
        await send('m1');
        await send('m2');
        // b answers the last one first; a then sends on a new chain.
        const early = await b.engine.decrypt(nextEnvelopeId(), sent[2]!.ciphertext);
        expect(utf8Decode(early.plaintext)).toBe('m2');
        await deliver(b, a, 'ack');
        await send('m3');
        await send('m4');
        await send('m5');
        for (const index of [4, 0, 5, 1, 3]) {
          const { ciphertext, message } = sent[index]!;
          const decrypted = await b.engine.decrypt(nextEnvelopeId(), ciphertext);
          expect(utf8Decode(decrypted.plaintext)).toBe(message);
          expect(decrypted.sender).toEqual(a.address);
        }
      });

      it('decrypts idempotently per envelope id until the result is forgotten', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        const envelopeId = nextEnvelopeId();
        const ciphertext = await a.engine.encrypt(b.address, text('once'));
        const first = await b.engine.decrypt(envelopeId, ciphertext);
        // The session moves on; the envelope still gives its stored result.
        await deliver(a, b, 'later');
        await deliver(b, a, 'answer');
        const again = await b.engine.decrypt(envelopeId, ciphertext);
        expect(again).toEqual(first);
        expect(utf8Decode(again.plaintext)).toBe('once');

        await b.engine.forgetDecrypted(envelopeId);
        await b.engine.forgetDecrypted(nextEnvelopeId()); // unknown ids are fine
        await expectCode(b.engine.decrypt(envelopeId, ciphertext), 'DUPLICATE_MESSAGE');
      });

      it('refuses a replayed ciphertext under another envelope id', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        const preKeyMessage = await a.engine.encrypt(b.address, text('prekey'));
        await b.engine.decrypt(nextEnvelopeId(), preKeyMessage);
        await expectCode(b.engine.decrypt(nextEnvelopeId(), preKeyMessage), 'DUPLICATE_MESSAGE');

        await deliver(b, a, 'established');
        const whisper = await a.engine.encrypt(b.address, text('whisper'));
        await b.engine.decrypt(nextEnvelopeId(), whisper);
        await expectCode(b.engine.decrypt(nextEnvelopeId(), whisper), 'DUPLICATE_MESSAGE');
        await deliver(a, b, 'still fine');
      });

      it('refuses a replayed PreKey message on a last-resort Kyber key, even without its session', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b, { preKey: false, lastResort: true });
        const ciphertext = await a.engine.encrypt(b.address, text('last resort'));
        await b.engine.decrypt(nextEnvelopeId(), ciphertext);
        await b.engine.deleteSession(a.address);
        await expectCode(b.engine.decrypt(nextEnvelopeId(), ciphertext), 'DUPLICATE_MESSAGE');
        expect(await b.engine.hasSession(a.address)).toBe(false);
      });

      it('refuses tampered, foreign and malformed ciphertexts and keeps the session usable', async () => {
        const a = await newDevice();
        const b = await newDevice();
        const c = await newDevice();
        await connect(a, b);
        const ciphertext = await a.engine.encrypt(b.address, text('intact'));
        const { content } = ciphertext;
        // Every byte but the first is authenticated; libsignal reads only the high nibble of the
        // version byte, so its low bits carry nothing.
        for (const index of [1, 2, 40, Math.floor(content.length / 2), content.length - 1]) {
          await expectCode(
            b.engine.decrypt(nextEnvelopeId(), { ...ciphertext, content: flipBit(content, index) }),
            'INVALID_MESSAGE',
          );
        }
        await expectCode(
          b.engine.decrypt(nextEnvelopeId(), { ...ciphertext, content: content.subarray(0, 60) }),
          'INVALID_MESSAGE',
        );
        await expectCode(
          b.engine.decrypt(nextEnvelopeId(), { type: ciphertext.type, content: new Uint8Array(0) }),
          'INVALID_MESSAGE',
        );
        await expectCode(
          b.engine.decrypt(nextEnvelopeId(), { ...ciphertext, type: ciphertext.type + 100 }),
          'INVALID_MESSAGE',
        );
        // Sealed to b: c cannot open it.
        await expectCode(c.engine.decrypt(nextEnvelopeId(), ciphertext), 'INVALID_MESSAGE');

        const decrypted = await b.engine.decrypt(nextEnvelopeId(), ciphertext);
        expect(utf8Decode(decrypted.plaintext)).toBe('intact');
        await deliver(b, a, 'fine');
      });

      it('keeps one session per device, and deletes them one by one', async () => {
        const a = await newDevice();
        const b1 = await newDevice();
        const b2 = await linkDevice(b1, 2);
        expect(await a.engine.sessionDeviceIds(b1.address.accountId)).toEqual([]);
        await connect(a, b2);
        await connect(a, b1);
        expect(await a.engine.sessionDeviceIds(b1.address.accountId)).toEqual([1, 2]);
        await deliver(a, b1, 'to the primary');
        await deliver(a, b2, 'to the linked device');
        await deliver(b2, a, 'from the linked device');

        await a.engine.deleteSession(b1.address);
        expect(await a.engine.hasSession(b1.address)).toBe(false);
        expect(await a.engine.sessionDeviceIds(b1.address.accountId)).toEqual([2]);
        await expectCode(a.engine.encrypt(b1.address, text('gone')), 'NO_SESSION');
        await deliver(a, b2, 'still here');
        await a.engine.deleteSession(b1.address); // deleting twice is fine
      });
    });

    describe('groups (sender keys, multi-recipient sealed sender)', () => {
      /** `from` hands its sender key for `distributionId` to `to`, pairwise, as the caller does. */
      const giveSenderKey = async (
        from: Device,
        to: Device,
        distributionId: DistributionId,
      ): Promise<void> => {
        const message = await from.engine.senderKeyDistribution(distributionId);
        const ciphertext = await from.engine.encrypt(to.address, message);
        const received = await to.engine.decrypt(nextEnvelopeId(), ciphertext);
        expect(received.sender).toEqual(from.address);
        expect(received.distributionId).toBeUndefined();
        await to.engine.processSenderKeyDistribution(received.sender, received.plaintext);
      };

      /** Each recipient's share of `message`, by "account.device". */
      const sharesOf = (message: MultiRecipientMessage): Map<string, Ciphertext> => {
        const shares = splitMultiRecipient(message);
        const byDevice = new Map<string, Ciphertext>();
        for (const share of shares) {
          expect(share.ciphertext.type).toBe(message.type);
          byDevice.set(`${share.address.accountId}.${share.address.deviceId}`, share.ciphertext);
        }
        expect(byDevice.size).toBe(shares.length);
        return byDevice;
      };
      const shareFor = (shares: Map<string, Ciphertext>, device: Device): Ciphertext => {
        const share = shares.get(`${device.address.accountId}.${device.address.deviceId}`);
        if (share === undefined) return expect.fail(`no share for ${device.address.accountId}`);
        return share;
      };

      /** A sender `a` with sessions to every member, who all hold its key for `distributionId`. */
      const group = async (members: number, distributionId: DistributionId) => {
        const a = await newDevice();
        const others: Device[] = [];
        for (let i = 0; i < members; i += 1) {
          const member = await newDevice();
          await connect(a, member);
          await giveSenderKey(a, member, distributionId);
          others.push(member);
        }
        return { a, others };
      };

      /** group(2) with a second device of the second member's account (c2), given the key too. */
      const groupWithLinkedDevice = async (distributionId: DistributionId) => {
        const { a, others } = await group(2, distributionId);
        const [b, c1] = others as [Device, Device];
        const c2 = await linkDevice(c1, 2);
        await connect(a, c2);
        await giveSenderKey(a, c2, distributionId);
        return { a, b, c1, c2 };
      };

      it('hands out one sender key per distribution id, and refuses malformed ones', async () => {
        const a = await newDevice();
        const b = await newDevice();
        const d1 = newDistributionId();
        const first = await a.engine.senderKeyDistribution(d1);
        expect(first.length).toBeGreaterThan(32);
        // The same key's message again: a second call does not make a new key. It stays the
        // same after messages were sent, so that a late recipient can open the earlier ones.
        expect(await a.engine.senderKeyDistribution(d1)).toEqual(first);
        await connect(a, b);
        await a.engine.groupEncrypt(d1, [b.address], text('moves the chain on'));
        expect(await a.engine.senderKeyDistribution(d1)).toEqual(first);
        const second = await a.engine.senderKeyDistribution(newDistributionId());
        expect(equalBytes(second, first)).toBe(false);

        await expectCode(
          b.engine.processSenderKeyDistribution(a.address, text('not a key')),
          'INVALID_MESSAGE',
        );
        await expectCode(
          b.engine.processSenderKeyDistribution(a.address, first.subarray(0, 20)),
          'INVALID_MESSAGE',
        );
        await expectCode(
          b.engine.processSenderKeyDistribution(a.address, new Uint8Array(0)),
          'INVALID_MESSAGE',
        );
        // A device's own key is its own to make: a distribution message naming it is refused.
        await expectCode(
          a.engine.processSenderKeyDistribution(a.address, second),
          'INVALID_MESSAGE',
        );
        for (const id of ['not-a-uuid', d1.toUpperCase(), '']) {
          await expectArgumentError(() => a.engine.senderKeyDistribution(id));
        }
        // Processing the same distribution message twice is harmless.
        await b.engine.processSenderKeyDistribution(a.address, first);
        await b.engine.processSenderKeyDistribution(a.address, first);
      });

      it('seals one message for several devices; each opens its share, named and under the distribution id', async () => {
        const d = newDistributionId();
        // A second device of c's account gets its share too (the same bytes as c1's).
        const { a, b, c1, c2 } = await groupWithLinkedDevice(d);
        const recipients = [b, c1, c2];

        const marker = 'group hello 5e1d';
        const message = await a.engine.groupEncrypt(
          d,
          recipients.map((r) => r.address),
          text(marker),
        );
        expect(Number.isInteger(message.type)).toBe(true);
        const pairwise = await a.engine.encrypt(b.address, text('pairwise'));
        expect(message.type).not.toBe(pairwise.type);
        expect(message.recipients).toEqual(
          recipients.map((r) => ({
            address: r.address,
            registrationId: r.identity.registrationId,
          })),
        );
        // Sealed: neither the plaintext nor the sender's account id or key is visible.
        expect(contains(message.content, text(marker))).toBe(false);
        expect(contains(message.content, text(a.address.accountId))).toBe(false);
        expect(contains(message.content, a.identity.identityKey)).toBe(false);

        const shares = sharesOf(message);
        expect(shares.size).toBe(3);
        for (const recipient of recipients) {
          const share = shareFor(shares, recipient);
          expect(contains(share.content, text(marker))).toBe(false);
          const decrypted = await recipient.engine.decrypt(nextEnvelopeId(), share);
          expect(utf8Decode(decrypted.plaintext)).toBe(marker);
          expect(decrypted.sender).toEqual(a.address);
          expect(decrypted.distributionId).toBe(d);
        }
        // A share is sealed to its recipient's account: a device of another account cannot open it.
        await expectCode(
          b.engine.decrypt(nextEnvelopeId(), shareFor(shares, c1)),
          'INVALID_MESSAGE',
        );

        // The key's chain moves on; later messages (even to fewer devices) still open.
        for (let i = 0; i < 3; i += 1) {
          const next = await a.engine.groupEncrypt(d, [b.address, c2.address], text(`more ${i}`));
          const nextShares = sharesOf(next);
          expect(nextShares.size).toBe(2);
          for (const recipient of [c2, b]) {
            const decrypted = await recipient.engine.decrypt(
              nextEnvelopeId(),
              shareFor(nextShares, recipient),
            );
            expect(utf8Decode(decrypted.plaintext)).toBe(`more ${i}`);
            expect(decrypted.distributionId).toBe(d);
          }
        }
        // Pairwise messages are unaffected.
        await deliver(b, a, 'pairwise still works');
        await deliver(a, c1, 'both ways');
      });

      it('names the sender of a group message whose key it lacks, and opens it once the key arrives', async () => {
        const d = newDistributionId();
        const a = await newDevice();
        const b = await newDevice();
        const stranger = await newDevice();
        await connect(a, b);
        await connect(a, stranger);
        // b knows a (a pairwise message arrived) but has not received a's sender key.
        await deliver(a, b, 'hi');

        const message = await a.engine.groupEncrypt(
          d,
          [b.address, stranger.address],
          text('early'),
        );
        const shares = sharesOf(message);
        const envelopeId = nextEnvelopeId();
        await expectNoSenderKey(b.engine.decrypt(envelopeId, shareFor(shares, b)), a.address, d);
        // A device that never heard of the sender is not asked to confirm its key for this:
        // nothing about the sender is stored, and its key is missing all the same.
        await expectNoSenderKey(
          stranger.engine.decrypt(nextEnvelopeId(), shareFor(shares, stranger), {
            confirmIdentity: async () => {
              throw new Error('must not be asked: a group message stores no identity');
            },
          }),
          a.address,
          d,
        );
        expect(await stranger.engine.identityState(a.address.accountId)).toBeUndefined();

        // The refusal left nothing behind: the same envelope opens once the key has arrived.
        await giveSenderKey(a, b, d);
        const decrypted = await b.engine.decrypt(envelopeId, shareFor(shares, b));
        expect(utf8Decode(decrypted.plaintext)).toBe('early');
        expect(decrypted.sender).toEqual(a.address);
        expect(decrypted.distributionId).toBe(d);
        // The key a device hands out late still opens what was sent before (the kept envelope
        // above), and what comes after.
        const later = await a.engine.groupEncrypt(d, [b.address], text('later'));
        expect(
          utf8Decode(
            (await b.engine.decrypt(nextEnvelopeId(), shareFor(sharesOf(later), b))).plaintext,
          ),
        ).toBe('later');
      });

      it('answers NO_SENDER_KEY for a message on a chain of the sender it was not given', async () => {
        // The sender's device made its key again under the same distribution id (the device was
        // restored with the same identity at the same address): the key this device holds is for
        // another chain. The message must be kept and the key asked for, not dropped.
        const d = newDistributionId();
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        await giveSenderKey(a, b, d);
        const restored = await linkDevice(a, a.address.deviceId);
        await connect(restored, b);
        await deliver(restored, b, 'back again');
        const message = await restored.engine.groupEncrypt(d, [b.address], text('a new chain'));
        await expectNoSenderKey(
          b.engine.decrypt(nextEnvelopeId(), shareFor(sharesOf(message), b)),
          a.address,
          d,
        );
      });

      it('makes a new key for a new distribution id, which the old key does not open', async () => {
        const d1 = newDistributionId();
        const { a, others } = await group(2, d1);
        const [b, removed] = others as [Device, Device];
        const before = await a.engine.groupEncrypt(d1, [b.address, removed.address], text('old'));
        for (const member of [b, removed]) {
          const opened = await member.engine.decrypt(
            nextEnvelopeId(),
            shareFor(sharesOf(before), member),
          );
          expect(utf8Decode(opened.plaintext)).toBe('old');
        }

        // A rotation (after a removal): the new key goes to b only.
        const d2 = newDistributionId();
        await giveSenderKey(a, b, d2);
        // Even were the removed device's share still produced, it cannot open it.
        const after = await a.engine.groupEncrypt(
          d2,
          [b.address, removed.address],
          text('after the removal'),
        );
        const shares = sharesOf(after);
        const opened = await b.engine.decrypt(nextEnvelopeId(), shareFor(shares, b));
        expect(utf8Decode(opened.plaintext)).toBe('after the removal');
        expect(opened.distributionId).toBe(d2);
        await expectNoSenderKey(
          removed.engine.decrypt(nextEnvelopeId(), shareFor(shares, removed)),
          a.address,
          d2,
        );
        // The old key still works for what was sent under it, and b still reads d1 too.
        const old = await a.engine.groupEncrypt(d1, [b.address], text('d1 again'));
        expect(
          (await b.engine.decrypt(nextEnvelopeId(), shareFor(sharesOf(old), b))).distributionId,
        ).toBe(d1);
      });

      it('refuses a recipient without a session, naming it, and needs at least one recipient', async () => {
        const d = newDistributionId();
        const { a, others } = await group(1, d);
        const [b] = others as [Device];
        const unknown = await newDevice();
        const error = await expectCode(
          a.engine.groupEncrypt(d, [b.address, unknown.address], text('x')),
          'NO_SESSION',
        );
        expect(error.message).toContain(unknown.address.accountId);
        expect(error.message).not.toContain(b.address.accountId);
        await expectArgumentError(() => a.engine.groupEncrypt(d, [], text('nobody')));
        await expectArgumentError(() =>
          a.engine.groupEncrypt(d, [b.address, b.address], text('twice')),
        );
        await expectArgumentError(() => a.engine.groupEncrypt(d, [a.address], text('myself')));
        await expectArgumentError(() => a.engine.groupEncrypt('nope', [b.address], text('x')));
        // Nothing was half-done: the next message to b opens.
        const message = await a.engine.groupEncrypt(d, [b.address], text('fine'));
        const opened = await b.engine.decrypt(nextEnvelopeId(), shareFor(sharesOf(message), b));
        expect(utf8Decode(opened.plaintext)).toBe('fine');
      });

      it('refuses a verified recipient whose key changed, as encrypt does, until it is accepted', async () => {
        const d = newDistributionId();
        const { a, others } = await group(2, d);
        const [b, c] = others as [Device, Device];
        await a.engine.setVerified(b.address.accountId, true);
        // b reinstalls; a sees the new key when it tries a session with it.
        const b2 = await newDevice(b.address);
        await expectUntrusted(
          a.engine.processBundle(b.address, await bundleOf(b2)),
          b.address.accountId,
        );
        await expectUntrusted(
          a.engine.groupEncrypt(d, [c.address, b.address], text('not to the new key')),
          b.address.accountId,
        );
        // The others still get messages without b.
        const toC = await a.engine.groupEncrypt(d, [c.address], text('still fine'));
        const opened = await c.engine.decrypt(nextEnvelopeId(), shareFor(sharesOf(toC), c));
        expect(utf8Decode(opened.plaintext)).toBe('still fine');
        // Accepted: a new session with the new key, and b's new device is a recipient again.
        await a.engine.acceptIdentity(b.address.accountId);
        await connect(a, b2);
        const both = await a.engine.groupEncrypt(d, [c.address, b2.address], text('welcome back'));
        expect(sharesOf(both).size).toBe(2);
      });

      it('refuses tampered and malformed shares, and still opens the intact one', async () => {
        const d = newDistributionId();
        const { a, others } = await group(1, d);
        const [b] = others as [Device];
        const share = shareFor(
          sharesOf(await a.engine.groupEncrypt(d, [b.address], text('ok'))),
          b,
        );
        const { content } = share;
        // Every byte but the first (the version) is authenticated.
        for (const index of [1, 2, 40, Math.floor(content.length / 2), content.length - 1]) {
          await expectCode(
            b.engine.decrypt(nextEnvelopeId(), { ...share, content: flipBit(content, index) }),
            'INVALID_MESSAGE',
          );
        }
        for (const bad of [content.subarray(0, 60), new Uint8Array(0)]) {
          await expectCode(
            b.engine.decrypt(nextEnvelopeId(), { ...share, content: bad }),
            'INVALID_MESSAGE',
          );
        }
        await expectCode(
          b.engine.decrypt(nextEnvelopeId(), { ...share, type: share.type + 100 }),
          'INVALID_MESSAGE',
        );
        const opened = await b.engine.decrypt(nextEnvelopeId(), share);
        expect(utf8Decode(opened.plaintext)).toBe('ok');
      });

      it("opens a share the relay sealed at rest to its account's identity, and no other", async () => {
        const d = newDistributionId();
        // Both devices of an account hold its identity key pair: each opens its own share.
        const { a, b, c1, c2 } = await groupWithLinkedDevice(d);
        const shares = sharesOf(
          await a.engine.groupEncrypt(d, [b.address, c1.address, c2.address], text('at rest')),
        );
        const atRest = (share: Ciphertext, identityKey: Uint8Array): Ciphertext => ({
          type: SEALED_SENDER_V2_AT_REST,
          content: sealAtRest(share.content, identityKey),
        });
        const sealedForB = atRest(shareFor(shares, b), b.identity.identityKey);
        const { content } = sealedForB;
        // The version, the ephemeral key, the ciphertext and the tag: every byte counts.
        for (const index of [0, 1, 32, 40, Math.floor(content.length / 2), content.length - 1]) {
          await expectCode(
            b.engine.decrypt(nextEnvelopeId(), { ...sealedForB, content: flipBit(content, index) }),
            'INVALID_MESSAGE',
          );
        }
        for (const bad of [content.subarray(0, 49), content.subarray(0, 60), new Uint8Array(0)]) {
          await expectCode(
            b.engine.decrypt(nextEnvelopeId(), { ...sealedForB, content: bad }),
            'INVALID_MESSAGE',
          );
        }
        // B's own share, sealed to another account's identity: B cannot open the seal (nor can
        // C open the share inside, which is B's).
        const sealedForC = atRest(shareFor(shares, b), c1.identity.identityKey);
        await expectCode(b.engine.decrypt(nextEnvelopeId(), sealedForC), 'INVALID_MESSAGE');
        await expectCode(c1.engine.decrypt(nextEnvelopeId(), sealedForC), 'INVALID_MESSAGE');

        for (const [device, sealed] of [
          [b, sealedForB],
          [c1, atRest(shareFor(shares, c1), c1.identity.identityKey)],
          [c2, atRest(shareFor(shares, c2), c1.identity.identityKey)],
        ] as const) {
          const opened = await device.engine.decrypt(nextEnvelopeId(), sealed);
          expect(utf8Decode(opened.plaintext)).toBe('at rest');
          expect(opened.sender).toEqual(a.address);
          expect(opened.distributionId).toBe(d);
        }
      });

      it('decrypts each envelope once: the same id gives the same result, a replay is a duplicate', async () => {
        const d = newDistributionId();
        const { a, others } = await group(1, d);
        const [b] = others as [Device];
        const share = shareFor(
          sharesOf(await a.engine.groupEncrypt(d, [b.address], text('once'))),
          b,
        );
        const envelopeId = nextEnvelopeId();
        const first = await b.engine.decrypt(envelopeId, share);
        const again = await b.engine.decrypt(envelopeId, share);
        expect(again).toEqual(first);
        expect(again.distributionId).toBe(d);
        await expectCode(b.engine.decrypt(nextEnvelopeId(), share), 'DUPLICATE_MESSAGE');
        await b.engine.forgetDecrypted(envelopeId);
        await expectCode(b.engine.decrypt(envelopeId, share), 'DUPLICATE_MESSAGE');
      });

      it('drops the sender keys of an account whose identity changed', async () => {
        const d = newDistributionId();
        const { a, others } = await group(1, d);
        const [b] = others as [Device];
        await deliver(b, a, 'b knows a');
        // b holds a's key; a reinstalls (same address, new identity) and writes to b again.
        const fresh = await newDevice(a.address);
        await connect(fresh, b);
        await deliver(fresh, b, 'new phone');
        expect((await b.engine.identityState(a.address.accountId))?.changed).toBe(true);
        // A group message under the old key (from the old installation) no longer opens.
        const stale = await a.engine.groupEncrypt(d, [b.address], text('stale'));
        await expectNoSenderKey(
          b.engine.decrypt(nextEnvelopeId(), shareFor(sharesOf(stale), b)),
          a.address,
          d,
        );
      });
    });

    describe('identity trust', () => {
      it('trusts the first key and records a changed one for an unverified account', async () => {
        const a = await newDevice();
        const b = await newDevice();
        expect(await a.engine.identityState(b.address.accountId)).toBeUndefined();
        await connect(a, b);
        await deliver(a, b, 'hello');
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b.identity.identityKey,
          verified: false,
          changed: false,
        });
        const before = await a.engine.safetyNumber(b.address.accountId);

        // b reinstalls: same account and device, new identity.
        const b2 = await newDevice(b.address);
        await connect(a, b2);
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b2.identity.identityKey,
          verified: false,
          changed: true,
        });
        await deliver(a, b2, 'after the change');
        await deliver(b2, a, 'answer');
        const after = await a.engine.safetyNumber(b.address.accountId);
        expect(after.digits).not.toBe(before.digits);

        await a.engine.acceptIdentity(b.address.accountId);
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b2.identity.identityKey,
          verified: false,
          changed: false,
        });
      });

      it('blocks a verified account whose key changed until the change is accepted', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        await deliver(a, b, 'hello');
        await a.engine.setVerified(b.address.accountId, true);
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b.identity.identityKey,
          verified: true,
          changed: false,
        });

        const b3 = await newDevice(b.address);
        const bundle = await bundleOf(b3);
        await expectUntrusted(a.engine.processBundle(b.address, bundle), b.address.accountId);
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b.identity.identityKey,
          verified: true,
          changed: true,
          pendingIdentityKey: b3.identity.identityKey,
        });
        // The existing session is refused as well, until the user decides.
        await expectUntrusted(a.engine.encrypt(b.address, text('no')), b.address.accountId);
        await expectUntrusted(a.engine.processBundle(b.address, bundle), b.address.accountId);

        await a.engine.acceptIdentity(b.address.accountId);
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b3.identity.identityKey,
          verified: false,
          changed: false,
        });
        // The old session led to the old identity: it is gone, not silently trusted again.
        expect(await a.engine.sessionDeviceIds(b.address.accountId)).toEqual([]);
        await expectCode(a.engine.encrypt(b.address, text('old session')), 'NO_SESSION');
        await a.engine.processBundle(b.address, bundle);
        await deliver(a, b3, 'accepted');
        await deliver(b3, a, 'thanks');
      });

      it('refuses a message from a verified account under a new key, and decrypts it once accepted', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        await deliver(a, b, 'hello');
        await deliver(b, a, 'hi');
        await a.engine.setVerified(b.address.accountId, true);

        const b4 = await newDevice(b.address);
        await connect(b4, a);
        const envelopeId = nextEnvelopeId();
        const ciphertext = await b4.engine.encrypt(a.address, text('new phone'));
        await expectUntrusted(a.engine.decrypt(envelopeId, ciphertext), b.address.accountId);
        expect(await a.engine.identityState(b.address.accountId)).toMatchObject({
          verified: true,
          changed: true,
          pendingIdentityKey: b4.identity.identityKey,
        });

        await a.engine.acceptIdentity(b.address.accountId);
        const decrypted = await a.engine.decrypt(envelopeId, ciphertext);
        expect(utf8Decode(decrypted.plaintext)).toBe('new phone');
        expect(decrypted.sender).toEqual(b.address);
        await deliver(a, b4, 'welcome back');
      });

      it('drops the sessions with the other devices of an account whose key changed', async () => {
        const a = await newDevice();
        const b1 = await newDevice();
        const b2 = await linkDevice(b1, 2);
        await connect(a, b1);
        await connect(a, b2);
        await deliver(a, b1, 'to one');
        await deliver(a, b2, 'to two');

        // b reinstalls on device 1; device 2 went with the old identity.
        const fresh = await newDevice(b1.address);
        await connect(a, fresh);
        expect(await a.engine.sessionDeviceIds(b1.address.accountId)).toEqual([1]);
        await expectCode(a.engine.encrypt(b2.address, text('stale')), 'NO_SESSION');
        await deliver(a, fresh, 'hello again');
        expect(await a.engine.identityState(b1.address.accountId)).toEqual({
          identityKey: fresh.identity.identityKey,
          verified: false,
          changed: true,
        });
      });

      it('takes a pending key as a plain change when the account is no longer verified', async () => {
        const a = await newDevice();
        const b = await newDevice();
        await connect(a, b);
        await a.engine.setVerified(b.address.accountId, true);
        const b2 = await newDevice(b.address);
        const bundle = await bundleOf(b2);
        await expectUntrusted(a.engine.processBundle(b.address, bundle), b.address.accountId);

        await a.engine.setVerified(b.address.accountId, false);
        expect(await a.engine.identityState(b.address.accountId)).toEqual({
          identityKey: b2.identity.identityKey,
          verified: false,
          changed: true,
        });
        await a.engine.processBundle(b.address, bundle);
        await deliver(a, b2, 'unverified but working');
      });

      it('refuses to verify or accept an account it has no key for', async () => {
        const a = await newDevice();
        const unknown = randomAccountId();
        expect(await a.engine.identityState(unknown)).toBeUndefined();
        await expectCode(a.engine.setVerified(unknown, true), 'NO_IDENTITY');
        await expectCode(a.engine.acceptIdentity(unknown), 'NO_IDENTITY');
        await expectCode(a.engine.safetyNumber(unknown), 'NO_IDENTITY');
      });
    });

    describe('safety numbers', () => {
      it('are the same 60 digits on both sides and differ between pairs', async () => {
        const a = await newDevice();
        const b = await newDevice();
        const c = await newDevice();
        await connect(a, b);
        await deliver(a, b, 'hello');
        await connect(a, c);
        const ab = await a.engine.safetyNumber(b.address.accountId);
        const ba = await b.engine.safetyNumber(a.address.accountId);
        expect(ab.digits).toMatch(/^\d{60}$/);
        expect(ba.digits).toBe(ab.digits);
        expect(ab.scannable.length).toBeGreaterThan(0);
        expect(ba.scannable.length).toBe(ab.scannable.length);
        const ac = await a.engine.safetyNumber(c.address.accountId);
        expect(ac.digits).toMatch(/^\d{60}$/);
        expect(ac.digits).not.toBe(ab.digits);
      });
    });

    describe('provisioning', () => {
      it('hands the identity and a payload to the new device, and to no other', async () => {
        const primary = await newDevice();
        const fresh = await openEngine();
        const key = await fresh.createProvisioningKey();
        expect(key.length).toBe(33);
        const payload = text('link token 42');
        const sealed = await primary.engine.sealProvisioning(key, payload);
        expect(contains(sealed, payload)).toBe(false);

        const third = await openEngine();
        await expectCode(third.openProvisioning(sealed), 'INVALID_PROVISIONING');
        await third.createProvisioningKey();
        await expectCode(third.openProvisioning(sealed), 'INVALID_PROVISIONING');
        expect(await third.localIdentity()).toBeUndefined();

        for (const index of [0, 1, 34, 46, sealed.length - 1]) {
          await expectCode(fresh.openProvisioning(flipBit(sealed, index)), 'INVALID_PROVISIONING');
        }
        await expectCode(fresh.openProvisioning(sealed.subarray(0, 40)), 'INVALID_PROVISIONING');
        expect(await fresh.localIdentity()).toBeUndefined();

        expect(await fresh.openProvisioning(sealed)).toEqual(payload);
        const identity = await fresh.localIdentity();
        expect(identity?.identityKey).toEqual(primary.identity.identityKey);
        expect(identity?.registrationId).toBeGreaterThanOrEqual(1);
        expect(identity?.registrationId).toBeLessThanOrEqual(16380);
        // The provisioning key is used once.
        await expectCode(fresh.openProvisioning(sealed), 'INVALID_PROVISIONING');
      });

      it('refuses a provisioning key that is not a public key', async () => {
        const primary = await newDevice();
        await expectCode(
          primary.engine.sealProvisioning(new Uint8Array(33), text('x')),
          'INVALID_PROVISIONING',
        );
      });

      it('does not replace the identity of a device that has one', async () => {
        const primary = await newDevice();
        const other = await newDevice();
        const key = await other.engine.createProvisioningKey();
        const sealed = await primary.engine.sealProvisioning(key, text('x'));
        await expectCode(other.engine.openProvisioning(sealed), 'IDENTITY_EXISTS');
        expect(await other.engine.localIdentity()).toEqual(other.identity);
      });

      it('lets the linked device talk as the account, under one identity', async () => {
        const primary = await newDevice();
        const linked = await linkDevice(primary, 2);
        const friend = await newDevice();
        await connect(friend, primary);
        await connect(friend, linked);
        await deliver(friend, primary, 'to the phone');
        await deliver(friend, linked, 'to the laptop');
        await deliver(linked, friend, 'from the laptop');
        await deliver(primary, friend, 'from the phone');
        expect(await friend.engine.identityState(primary.address.accountId)).toEqual({
          identityKey: primary.identity.identityKey,
          verified: false,
          changed: false,
        });
        // Devices of one account also talk to each other.
        await connect(primary, linked);
        await deliver(primary, linked, 'note to self');
        await deliver(linked, primary, 'noted');
      });
    });
  });
};
