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
  type DeviceId,
  type LocalIdentity,
  type PublicPreKey,
  type PublicSignedPreKey,
  type SignalEngine,
} from '@privcomm/client';
import { EngineRequestError } from './remote-engine.ts';

/**
 * The engine's requests (kotlin/core/EngineRequests.kt) answered by any SignalEngine in
 * JavaScript: the other end of remote-engine.ts. `privcomm daemon --web-bridge` serves the Node
 * engine this way to the app's web build, which reaches it through the same RemoteSignalEngine
 * as the phone reaches the Kotlin core. Every argument is checked (they come from another
 * process); every failure is an EngineRequestError with the Kotlin core's kinds and codes.
 */

type Args = Record<string, unknown>;

const argument = (message: string): EngineRequestError =>
  new EngineRequestError({ kind: 'argument', message });

const object = (args: Args, name: string): Args => {
  const value = args[name];
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw argument(`${name} must be an object`);
  return value as Args;
};
const integer = (args: Args, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
  const value = args[name];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw argument(`${name} must be a whole number from ${min} to ${max}`);
  return value;
};
const text = (args: Args, name: string): string => {
  const value = args[name];
  if (typeof value !== 'string') throw argument(`${name} must be a string`);
  return value;
};
const bytes = (args: Args, name: string): Uint8Array => {
  try {
    return fromBase64(text(args, name));
  } catch (error) {
    if (error instanceof EngineRequestError) throw error;
    throw argument(`${name} must be base64`);
  }
};
const boolean = (args: Args, name: string): boolean => {
  const value = args[name];
  if (typeof value !== 'boolean') throw argument(`${name} must be true or false`);
  return value;
};
const accountId = (args: Args, name = 'accountId'): AccountId => {
  const value = args[name];
  if (!isAccountId(value)) throw argument(`${name} must be an account id`);
  return value;
};
const deviceId = (args: Args, name = 'deviceId'): DeviceId => {
  const value = args[name];
  if (!isDeviceId(value)) throw argument(`${name} must be a device id`);
  return value;
};
const addressOf = (value: Args): Address => ({
  accountId: accountId(value),
  deviceId: deviceId(value),
});
const address = (args: Args, name = 'address'): Address => addressOf(object(args, name));
const addresses = (args: Args, name: string): Address[] => {
  const value = args[name];
  if (!Array.isArray(value)) throw argument(`${name} must be a list of addresses`);
  return value.map((item: unknown) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      throw argument(`each of ${name} must be an address`);
    return addressOf(item as Args);
  });
};
const preKeyArg = (value: Args): PublicPreKey => ({
  keyId: integer(value, 'keyId'),
  publicKey: bytes(value, 'publicKey'),
});
const signedPreKeyArg = (value: Args): PublicSignedPreKey => ({
  ...preKeyArg(value),
  signature: bytes(value, 'signature'),
});

const wireIdentity = (identity: LocalIdentity) => ({
  identityKey: toBase64(identity.identityKey),
  registrationId: identity.registrationId,
});
const wirePreKey = (key: PublicPreKey) => ({
  keyId: key.keyId,
  publicKey: toBase64(key.publicKey),
});
const wireSignedPreKey = (key: PublicSignedPreKey) => ({
  ...wirePreKey(key),
  signature: toBase64(key.signature),
});

/** Thrown inside decrypt's confirmation callback: the caller must be asked, as Kotlin does. */
class AskCaller {
  constructor(
    readonly accountId: AccountId,
    readonly identityKey: Uint8Array,
  ) {}
}

/** An engine's failure as the Kotlin core reports it. */
const failureOf = (error: unknown): EngineRequestError => {
  if (error instanceof EngineRequestError) return error;
  if (error instanceof UntrustedIdentityError)
    return new EngineRequestError({
      kind: 'engine',
      code: error.code,
      message: error.message,
      accountId: error.accountId,
    });
  if (error instanceof NoSenderKeyError)
    return new EngineRequestError({
      kind: 'engine',
      code: error.code,
      message: error.message,
      accountId: error.sender.accountId,
      deviceId: error.sender.deviceId,
      distributionId: error.distributionId,
    });
  if (error instanceof EngineError)
    return new EngineRequestError({ kind: 'engine', code: error.code, message: error.message });
  // An engine refuses a bad argument with a TypeError or a RangeError (out-of-range counts).
  if (error instanceof TypeError || error instanceof RangeError)
    return new EngineRequestError({ kind: 'argument', message: error.message });
  return new EngineRequestError({ kind: 'internal', message: String(error) });
};

/**
 * Answers engine requests over the engines `open` gives (one handle per "open"). "close" closes
 * the engine and forgets its handle ("wipe" erases it first); an unknown handle or op is an argument error.
 */
export class EngineRequests {
  private readonly engines = new Map<number, SignalEngine>();
  private nextHandle = 1;

  constructor(private readonly open: (database: string) => Promise<SignalEngine>) {}

  /** One request: resolves with its JSON result, rejects with an EngineRequestError. */
  async request(op: string, handle?: number, args: Args = {}): Promise<unknown> {
    try {
      if (op === 'open') {
        const engine = await this.open(text(args, 'file'));
        const opened = this.nextHandle;
        this.nextHandle += 1;
        this.engines.set(opened, engine);
        return opened;
      }
      const engine = handle === undefined ? undefined : this.engines.get(handle);
      if (engine === undefined) throw argument('no open engine has this handle (closed?)');
      if (op === 'close' || op === 'wipe') {
        this.engines.delete(handle as number);
        await (op === 'wipe' ? engine.wipe() : engine.close());
        return null;
      }
      return await this.operation(engine, op, args);
    } catch (error) {
      throw failureOf(error);
    }
  }

  /** Closes every engine still open. */
  async closeAll(): Promise<void> {
    const engines = [...this.engines.values()];
    this.engines.clear();
    for (const engine of engines) await engine.close();
  }

  private async operation(engine: SignalEngine, op: string, args: Args): Promise<unknown> {
    switch (op) {
      case 'createIdentity':
        return wireIdentity(await engine.createIdentity());
      case 'localIdentity': {
        const identity = await engine.localIdentity();
        return identity === undefined ? null : wireIdentity(identity);
      }
      case 'setLocalAddress':
        return engine.setLocalAddress(address(args));
      case 'generatePreKeys':
        return (await engine.generatePreKeys(integer(args, 'count'))).map(wirePreKey);
      case 'generateKyberPreKeys':
        return (await engine.generateKyberPreKeys(integer(args, 'count'))).map(wireSignedPreKey);
      case 'generateSignedPreKey':
        return wireSignedPreKey(await engine.generateSignedPreKey());
      case 'generateKyberLastResortPreKey':
        return wireSignedPreKey(await engine.generateKyberLastResortPreKey());
      case 'processBundle': {
        const bundle = object(args, 'bundle');
        const preKey = bundle.preKey === null ? undefined : preKeyArg(object(bundle, 'preKey'));
        return engine.processBundle(address(args), {
          identityKey: bytes(bundle, 'identityKey'),
          deviceId: deviceId(bundle),
          registrationId: integer(bundle, 'registrationId'),
          signedPreKey: signedPreKeyArg(object(bundle, 'signedPreKey')),
          ...(preKey === undefined ? {} : { preKey }),
          kyberPreKey: signedPreKeyArg(object(bundle, 'kyberPreKey')),
        });
      }
      case 'hasSession':
        return engine.hasSession(address(args));
      case 'sessionDeviceIds':
        return engine.sessionDeviceIds(accountId(args));
      case 'deleteSession':
        return engine.deleteSession(address(args));
      case 'encrypt': {
        const message = await engine.encrypt(address(args), bytes(args, 'plaintext'));
        return {
          type: message.type,
          content: toBase64(message.content),
          registrationId: message.registrationId,
        };
      }
      case 'decrypt':
        return this.decrypt(engine, args);
      case 'forgetDecrypted':
        return engine.forgetDecrypted(text(args, 'envelopeId'));
      case 'senderKeyDistribution':
        return toBase64(await engine.senderKeyDistribution(text(args, 'distributionId')));
      case 'processSenderKeyDistribution':
        return engine.processSenderKeyDistribution(address(args, 'sender'), bytes(args, 'message'));
      case 'groupEncrypt': {
        const message = await engine.groupEncrypt(
          text(args, 'distributionId'),
          addresses(args, 'recipients'),
          bytes(args, 'plaintext'),
        );
        return {
          type: message.type,
          content: toBase64(message.content),
          recipients: message.recipients,
        };
      }
      case 'identityState': {
        const state = await engine.identityState(accountId(args));
        return state === undefined
          ? null
          : {
              identityKey: toBase64(state.identityKey),
              verified: state.verified,
              changed: state.changed,
              pendingIdentityKey:
                state.pendingIdentityKey === undefined ? null : toBase64(state.pendingIdentityKey),
            };
      }
      case 'setVerified':
        return engine.setVerified(accountId(args), boolean(args, 'verified'));
      case 'acceptIdentity':
        return engine.acceptIdentity(accountId(args));
      case 'safetyNumber': {
        const number = await engine.safetyNumber(accountId(args));
        return { digits: number.digits, scannable: toBase64(number.scannable) };
      }
      case 'createProvisioningKey':
        return toBase64(await engine.createProvisioningKey());
      case 'sealProvisioning':
        return toBase64(
          await engine.sealProvisioning(bytes(args, 'recipientKey'), bytes(args, 'payload')),
        );
      case 'openProvisioning':
        return toBase64(await engine.openProvisioning(bytes(args, 'ciphertext')));
      default:
        throw argument(`unknown engine request "${op}"`);
    }
  }

  /**
   * As the Kotlin core: a sender key that needs confirming is answered with `confirm`, and the
   * caller asks again with its `answer`. The engine asks between two of its operations, so
   * stopping there leaves nothing half-done.
   */
  private async decrypt(engine: SignalEngine, args: Args): Promise<unknown> {
    const ciphertext = { type: integer(args, 'type'), content: bytes(args, 'content') };
    const answer =
      args.answer === null || args.answer === undefined ? undefined : object(args, 'answer');
    const answered =
      answer === undefined
        ? undefined
        : {
            accountId: accountId(answer),
            identityKey: bytes(answer, 'identityKey'),
            confirmed: boolean(answer, 'confirmed'),
          };
    const confirmIdentity = async (sender: AccountId, key: Uint8Array): Promise<boolean> => {
      if (
        answered !== undefined &&
        answered.accountId === sender &&
        toBase64(answered.identityKey) === toBase64(key)
      )
        return answered.confirmed;
      throw new AskCaller(sender, key);
    };
    try {
      const result = await engine.decrypt(
        text(args, 'envelopeId'),
        ciphertext,
        boolean(args, 'confirming') ? { confirmIdentity } : {},
      );
      return {
        sender: result.sender,
        plaintext: toBase64(result.plaintext),
        distributionId: result.distributionId ?? null,
      };
    } catch (error) {
      if (error instanceof AskCaller)
        return {
          confirm: { accountId: error.accountId, identityKey: toBase64(error.identityKey) },
        };
      throw error;
    }
  }
}
