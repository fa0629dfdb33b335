import { splitBinaryFrame, type AccountId, type DeviceId } from '@privcomm/wire';
import { fromBase64, toBase64, utf8Decode, utf8Encode } from '../../src/bytes.ts';
import {
  EngineError,
  type Address,
  type Ciphertext,
  type Decrypted,
  type DecryptOptions,
  type EncryptedMessage,
  type SignalEngine,
} from '../../src/engine.ts';
import type { ClientLogger, LogLevel } from '../../src/logger.ts';
import type { SocketLike } from '../../src/transport.ts';

/**
 * In-memory stand-ins for unit tests of the core's logic. The real engine, relay and sockets are
 * exercised by the integration tests in packages/engine-node.
 */

const unused = (name: string) => (): never => {
  throw new Error(`FakeEngine.${name} is not used by these tests`);
};

/**
 * A "ciphertext" is the JSON of the sender's address and the plaintext: enough for the pipelines
 * to route, store and acknowledge, with no cryptography. Anything else fails to decrypt.
 */
export class FakeEngine implements SignalEngine {
  readonly sessions = new Map<AccountId, Set<DeviceId>>();
  readonly deleted: Address[] = [];
  readonly established: Address[] = [];
  readonly forgotten: string[] = [];
  /** Account ids whose next decrypt fails with the given error. */
  readonly failNext = new Map<string, Error>();
  identity?: { identityKey: Uint8Array; registrationId: number };

  constructor(readonly self: Address) {}

  static ciphertext(sender: Address, plaintext: Uint8Array): string {
    return toBase64(utf8Encode(JSON.stringify({ sender, p: toBase64(plaintext) })));
  }

  async processBundle(address: Address): Promise<void> {
    this.established.push(address);
    const set = this.sessions.get(address.accountId) ?? new Set();
    set.add(address.deviceId);
    this.sessions.set(address.accountId, set);
  }
  async hasSession(address: Address): Promise<boolean> {
    return this.sessions.get(address.accountId)?.has(address.deviceId) ?? false;
  }
  async sessionDeviceIds(accountId: AccountId): Promise<DeviceId[]> {
    return [...(this.sessions.get(accountId) ?? [])].sort((a, b) => a - b);
  }
  async deleteSession(address: Address): Promise<void> {
    this.deleted.push(address);
    this.sessions.get(address.accountId)?.delete(address.deviceId);
  }
  async encrypt(address: Address, plaintext: Uint8Array): Promise<EncryptedMessage> {
    if (!(await this.hasSession(address))) throw new EngineError('NO_SESSION', 'no session');
    return {
      type: 6,
      registrationId: 1,
      content: fromBase64(FakeEngine.ciphertext(this.self, plaintext)),
    };
  }
  async decrypt(
    _envelopeId: string,
    ciphertext: Ciphertext,
    options?: DecryptOptions,
  ): Promise<Decrypted> {
    let parsed: { sender: Address; p: string };
    try {
      parsed = JSON.parse(utf8Decode(ciphertext.content)) as typeof parsed;
    } catch {
      throw new EngineError('INVALID_MESSAGE', 'not a fake ciphertext');
    }
    const failure = this.failNext.get(parsed.sender.accountId);
    if (failure) {
      this.failNext.delete(parsed.sender.accountId);
      throw failure;
    }
    if (
      options?.confirmIdentity &&
      !(await options.confirmIdentity(parsed.sender.accountId, new Uint8Array(33)))
    )
      throw new EngineError('UNCONFIRMED_IDENTITY', 'unconfirmed');
    return { sender: parsed.sender, plaintext: fromBase64(parsed.p) };
  }
  async forgetDecrypted(envelopeId: string): Promise<void> {
    this.forgotten.push(envelopeId);
  }
  async identityState() {
    return undefined;
  }
  async localIdentity() {
    return this.identity;
  }
  async setLocalAddress(): Promise<void> {}
  async close(): Promise<void> {}
  async wipe(): Promise<void> {}
  createIdentity = unused('createIdentity');
  generatePreKeys = unused('generatePreKeys');
  generateKyberPreKeys = unused('generateKyberPreKeys');
  generateSignedPreKey = unused('generateSignedPreKey');
  generateKyberLastResortPreKey = unused('generateKyberLastResortPreKey');
  setVerified = unused('setVerified');
  acceptIdentity = unused('acceptIdentity');
  safetyNumber = unused('safetyNumber');
  createProvisioningKey = unused('createProvisioningKey');
  sealProvisioning = unused('sealProvisioning');
  openProvisioning = unused('openProvisioning');
  senderKeyDistribution = unused('senderKeyDistribution');
  processSenderKeyDistribution = unused('processSenderKeyDistribution');
  groupEncrypt = unused('groupEncrypt');
}

/** A socket whose relay side the test plays: `sent` holds what the client sent, parsed. */
export class FakeSocket implements SocketLike {
  readonly sent: Record<string, unknown>[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  binaryType: string | undefined;

  /** Records a frame as its JSON; a binary one with `binary: true` and what follows its JSON. */
  send(data: string | Uint8Array): void {
    if (typeof data === 'string') {
      this.sent.push(JSON.parse(data) as Record<string, unknown>);
      return;
    }
    const split = splitBinaryFrame(data);
    if (!split) throw new Error('the client sent a malformed binary frame');
    this.sent.push({ ...(JSON.parse(split.header) as object), binary: true, tail: split.tail });
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }
  /** The relay sends a frame (any data: tests send garbage too). */
  receive(data: unknown): void {
    this.onmessage?.({ data });
  }
  request(id: number, verb: string, body?: unknown): void {
    this.receive(
      JSON.stringify({ type: 'request', id, verb, ...(body === undefined ? {} : { body }) }),
    );
  }
  /** The relay closes the socket. */
  drop(code: number, reason = ''): void {
    this.onclose?.({ code, reason });
  }
  responses(): { id: number; status: number }[] {
    return this.sent.filter((f) => f.type === 'response') as { id: number; status: number }[];
  }
}

/** Keeps every log call, for assertions on what was refused and on what is never logged. */
export class CapturingLogger implements ClientLogger {
  readonly lines: { level: LogLevel; event: string; reason?: string }[] = [];
  log(level: LogLevel, event: string, reason?: string): void {
    this.lines.push({ level, event, ...(reason === undefined ? {} : { reason }) });
  }
  reasons(): string[] {
    return this.lines.map((l) => l.reason ?? '');
  }
}

/** Resolves once every pending promise callback ran (fakes answer at once). */
export const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
};
