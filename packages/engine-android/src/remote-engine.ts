import {
  EngineError,
  NoSenderKeyError,
  fromBase64,
  isAccountId,
  isDeviceId,
  toBase64,
  UntrustedIdentityError,
  type AccountId,
  type Address,
  type Ciphertext,
  type Decrypted,
  type DeviceId,
  type DecryptOptions,
  type DistributionId,
  type EncryptedMessage,
  type IdentityState,
  type LocalIdentity,
  type MultiRecipientMessage,
  type PublicPreKey,
  type PublicSignedPreKey,
  type RemoteBundle,
  type SafetyNumber,
  type SignalEngine,
} from '@privcomm/client';

/**
 * The SignalEngine whose every operation runs in the Kotlin core (kotlin/core), reached through
 * its JSON requests (kotlin/core/EngineRequests.kt): on a phone through the Expo module
 * (apps/mobile/modules/privcomm-engine), in the tests through a JVM (bridge.ts). Private keys
 * stay in Kotlin; only public values and ciphertexts cross, as base64. Platform-neutral: no
 * Node built-ins, so that the app's bundle can take it.
 */

/** A failure the Kotlin core reports: an engine code, a bad argument, or an internal failure. */
export interface EngineFailure {
  readonly kind: 'engine' | 'argument' | 'internal';
  readonly code?: string;
  readonly message: string;
  /** UNTRUSTED_IDENTITY and NO_SENDER_KEY: the account concerned (the sender, for the latter). */
  readonly accountId?: string;
  /** NO_SENDER_KEY: the sender's device and the distribution id it sent under. */
  readonly deviceId?: number;
  readonly distributionId?: string;
}

export class EngineRequestError extends Error {
  constructor(readonly failure: EngineFailure) {
    super(failure.message);
    this.name = 'EngineRequestError';
  }
}

/** Carries one request to the Kotlin core; resolves with its result, rejects with EngineRequestError. */
export type EngineChannel = (
  op: string,
  engine?: number,
  args?: Record<string, unknown>,
) => Promise<unknown>;

/** Reads one answer of the Kotlin core: its request id, and its result or failure. */
export const parseAnswer = (
  line: string,
): { id: number; result: unknown } | { id: number; failure: EngineRequestError } => {
  const answer = JSON.parse(line) as { id: number; result?: unknown; error?: EngineFailure };
  return answer.error === undefined
    ? { id: answer.id, result: answer.result ?? undefined }
    : { id: answer.id, failure: new EngineRequestError(answer.error) };
};

type Code = EngineError['code'];

const notAnAccount = (): EngineError =>
  new EngineError('INVALID_MESSAGE', 'the engine named no valid account');

/** The core's failures as the interface's errors: the same classes and codes as every engine. */
const translate = (error: unknown): unknown => {
  if (!(error instanceof EngineRequestError)) return error;
  const { kind, code, message, accountId, deviceId, distributionId } = error.failure;
  if (kind === 'engine' && code === 'UNTRUSTED_IDENTITY' && accountId !== undefined) {
    return new UntrustedIdentityError(accountId);
  }
  if (kind === 'engine' && code === 'NO_SENDER_KEY') {
    // The caller asks this sender for its key: a failure without a valid one is of no use.
    if (!isAccountId(accountId) || !isDeviceId(deviceId) || typeof distributionId !== 'string') {
      return notAnAccount();
    }
    return new NoSenderKeyError({ accountId, deviceId }, distributionId);
  }
  if (kind === 'engine') return new EngineError(code as Code, message);
  if (kind === 'argument') return new TypeError(message);
  return new Error(message);
};

interface WirePreKey {
  keyId: number;
  publicKey: string;
}
interface WireSignedPreKey extends WirePreKey {
  signature: string;
}

const preKey = (key: WirePreKey): PublicPreKey => ({
  keyId: key.keyId,
  publicKey: fromBase64(key.publicKey),
});
const signedPreKey = (key: WireSignedPreKey): PublicSignedPreKey => ({
  ...preKey(key),
  signature: fromBase64(key.signature),
});
const wirePreKey = (key: PublicPreKey): WirePreKey => ({
  keyId: key.keyId,
  publicKey: toBase64(key.publicKey),
});
const wireSignedPreKey = (key: PublicSignedPreKey): WireSignedPreKey => ({
  ...wirePreKey(key),
  signature: toBase64(key.signature),
});
const identity = (wire: { identityKey: string; registrationId: number }): LocalIdentity => ({
  identityKey: fromBase64(wire.identityKey),
  registrationId: wire.registrationId,
});

/** As the Kotlin core answers: its ids are checked with wire's guards before the core gets them. */
type DecryptAnswer =
  | {
      sender: { accountId: unknown; deviceId: unknown };
      plaintext: string;
      /** Set for a group (sender key) message; null or absent for a pairwise one. */
      distributionId?: string | null;
    }
  | { confirm: { accountId: unknown; identityKey: string } };

class RemoteSignalEngine implements SignalEngine {
  constructor(
    private readonly channel: EngineChannel,
    readonly handle: number,
  ) {}

  private async call<T>(op: string, args?: Record<string, unknown>): Promise<T> {
    try {
      return (await this.channel(op, this.handle, args)) as T;
    } catch (error) {
      throw translate(error);
    }
  }

  async createIdentity(): Promise<LocalIdentity> {
    return identity(await this.call('createIdentity'));
  }

  async localIdentity(): Promise<LocalIdentity | undefined> {
    const wire = await this.call<{ identityKey: string; registrationId: number } | undefined>(
      'localIdentity',
    );
    return wire === undefined ? undefined : identity(wire);
  }

  async setLocalAddress(address: Address): Promise<void> {
    await this.call('setLocalAddress', { address });
  }

  async generatePreKeys(count: number): Promise<PublicPreKey[]> {
    return (await this.call<WirePreKey[]>('generatePreKeys', { count })).map(preKey);
  }

  async generateKyberPreKeys(count: number): Promise<PublicSignedPreKey[]> {
    return (await this.call<WireSignedPreKey[]>('generateKyberPreKeys', { count })).map(
      signedPreKey,
    );
  }

  async generateSignedPreKey(): Promise<PublicSignedPreKey> {
    return signedPreKey(await this.call('generateSignedPreKey'));
  }

  async generateKyberLastResortPreKey(): Promise<PublicSignedPreKey> {
    return signedPreKey(await this.call('generateKyberLastResortPreKey'));
  }

  async processBundle(address: Address, bundle: RemoteBundle): Promise<void> {
    await this.call('processBundle', {
      address,
      bundle: {
        identityKey: toBase64(bundle.identityKey),
        deviceId: bundle.deviceId,
        registrationId: bundle.registrationId,
        signedPreKey: wireSignedPreKey(bundle.signedPreKey),
        preKey: bundle.preKey === undefined ? null : wirePreKey(bundle.preKey),
        kyberPreKey: wireSignedPreKey(bundle.kyberPreKey),
      },
    });
  }

  hasSession(address: Address): Promise<boolean> {
    return this.call('hasSession', { address });
  }

  async sessionDeviceIds(accountId: AccountId): Promise<DeviceId[]> {
    const ids = await this.call<unknown[]>('sessionDeviceIds', { accountId });
    const checked = ids.filter(isDeviceId);
    if (checked.length !== ids.length) {
      throw new EngineError('INVALID_MESSAGE', 'the engine answered an invalid device id');
    }
    return checked;
  }

  async deleteSession(address: Address): Promise<void> {
    await this.call('deleteSession', { address });
  }

  async encrypt(address: Address, plaintext: Uint8Array): Promise<EncryptedMessage> {
    const wire = await this.call<{ type: number; content: string; registrationId: number }>(
      'encrypt',
      { address, plaintext: toBase64(plaintext) },
    );
    return {
      type: wire.type,
      content: fromBase64(wire.content),
      registrationId: wire.registrationId,
    };
  }

  /**
   * As the Node engine: the confirmation of a new sender key runs between two operations, never
   * inside one, so the store stays free meanwhile; a store that changed between attempts and
   * asks about another key gets a bounded retry.
   */
  async decrypt(
    envelopeId: string,
    ciphertext: Ciphertext,
    options: DecryptOptions = {},
  ): Promise<Decrypted> {
    let answer: { accountId: AccountId; identityKey: string; confirmed: boolean } | null = null;
    for (let attempt = 1; ; attempt += 1) {
      const result: DecryptAnswer = await this.call<DecryptAnswer>('decrypt', {
        envelopeId,
        type: ciphertext.type,
        content: toBase64(ciphertext.content),
        confirming: options.confirmIdentity !== undefined,
        answer,
      });
      if ('sender' in result) {
        const { accountId, deviceId } = result.sender;
        if (!isAccountId(accountId) || !isDeviceId(deviceId)) throw notAnAccount();
        const { distributionId } = result;
        return {
          sender: { accountId, deviceId },
          plaintext: fromBase64(result.plaintext),
          ...(typeof distributionId === 'string' ? { distributionId } : {}),
        };
      }
      if (options.confirmIdentity === undefined || attempt >= 3) {
        throw new EngineError('UNCONFIRMED_IDENTITY', 'the sender key could not be confirmed');
      }
      const { accountId, identityKey }: { accountId: unknown; identityKey: string } =
        result.confirm;
      if (!isAccountId(accountId)) throw notAnAccount();
      const confirmed = await options.confirmIdentity(accountId, fromBase64(identityKey));
      answer = { accountId, identityKey, confirmed };
    }
  }

  async forgetDecrypted(envelopeId: string): Promise<void> {
    await this.call('forgetDecrypted', { envelopeId });
  }

  /*
   * Groups. The requests, as the Kotlin core answers them (bytes as base64):
   * - senderKeyDistribution {distributionId} -> the distribution message (base64 string)
   * - processSenderKeyDistribution {sender: {accountId, deviceId}, message} -> null
   * - groupEncrypt {distributionId, recipients: [{accountId, deviceId}], plaintext}
   *     -> {type, content, recipients: [{address: {accountId, deviceId}, registrationId}]}
   * - decrypt answers {sender, plaintext, distributionId} (distributionId null when pairwise)
   * - a NO_SENDER_KEY failure carries accountId, deviceId (the sender) and distributionId.
   */
  async senderKeyDistribution(distributionId: DistributionId): Promise<Uint8Array> {
    return fromBase64(await this.call('senderKeyDistribution', { distributionId }));
  }

  async processSenderKeyDistribution(sender: Address, message: Uint8Array): Promise<void> {
    await this.call('processSenderKeyDistribution', { sender, message: toBase64(message) });
  }

  async groupEncrypt(
    distributionId: DistributionId,
    recipients: readonly Address[],
    plaintext: Uint8Array,
  ): Promise<MultiRecipientMessage> {
    const wire = await this.call<{
      type: number;
      content: string;
      recipients: { address: { accountId: unknown; deviceId: unknown }; registrationId: number }[];
    }>('groupEncrypt', { distributionId, recipients, plaintext: toBase64(plaintext) });
    return {
      type: wire.type,
      content: fromBase64(wire.content),
      recipients: wire.recipients.map(({ address: { accountId, deviceId }, registrationId }) => {
        if (!isAccountId(accountId) || !isDeviceId(deviceId)) throw notAnAccount();
        return { address: { accountId, deviceId }, registrationId };
      }),
    };
  }

  async identityState(accountId: AccountId): Promise<IdentityState | undefined> {
    const wire = await this.call<
      | {
          identityKey: string;
          verified: boolean;
          changed: boolean;
          pendingIdentityKey: string | null;
        }
      | undefined
    >('identityState', { accountId });
    if (wire === undefined) return undefined;
    return {
      identityKey: fromBase64(wire.identityKey),
      verified: wire.verified,
      changed: wire.changed,
      ...(wire.pendingIdentityKey === null
        ? {}
        : { pendingIdentityKey: fromBase64(wire.pendingIdentityKey) }),
    };
  }

  async setVerified(accountId: AccountId, verified: boolean): Promise<void> {
    await this.call('setVerified', { accountId, verified });
  }

  async acceptIdentity(accountId: AccountId): Promise<void> {
    await this.call('acceptIdentity', { accountId });
  }

  async safetyNumber(accountId: AccountId): Promise<SafetyNumber> {
    const wire = await this.call<{ digits: string; scannable: string }>('safetyNumber', {
      accountId,
    });
    return { digits: wire.digits, scannable: fromBase64(wire.scannable) };
  }

  async createProvisioningKey(): Promise<Uint8Array> {
    return fromBase64(await this.call('createProvisioningKey'));
  }

  async sealProvisioning(recipientKey: Uint8Array, payload: Uint8Array): Promise<Uint8Array> {
    return fromBase64(
      await this.call('sealProvisioning', {
        recipientKey: toBase64(recipientKey),
        payload: toBase64(payload),
      }),
    );
  }

  async openProvisioning(ciphertext: Uint8Array): Promise<Uint8Array> {
    return fromBase64(await this.call('openProvisioning', { ciphertext: toBase64(ciphertext) }));
  }

  async close(): Promise<void> {
    try {
      await this.call('close');
    } catch (error) {
      // Closing twice is fine, as with the Node engine.
      if (!(error instanceof Error && error.message.includes('closed'))) throw error;
    }
  }

  async wipe(): Promise<void> {
    await this.call('wipe');
  }

  /** Tests that move time: the engine's clock, if it was opened with `now`. */
  async setClock(now: number): Promise<void> {
    await this.call('setClock', { now });
  }
}

export interface RemoteEngineOptions {
  /** A fixed start for the engine's clock (milliseconds), moved with setClock; tests only. */
  readonly now?: number;
}

export type RemoteEngine = SignalEngine & { setClock(now: number): Promise<void> };

/**
 * Opens an engine in the Kotlin core over the SQLite database `database` (a file path in the
 * tests' JVM, ':memory:' for a throwaway store; a database name on a phone).
 */
export const openRemoteEngine = async (
  channel: EngineChannel,
  database: string,
  options: RemoteEngineOptions = {},
): Promise<RemoteEngine> => {
  let handle: number;
  try {
    handle = (await channel('open', undefined, {
      file: database,
      ...(options.now === undefined ? {} : { now: options.now }),
    })) as number;
  } catch (error) {
    throw translate(error);
  }
  return new RemoteSignalEngine(channel, handle);
};
