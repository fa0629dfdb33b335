import { Type, type TSchema } from 'typebox';
import { Value } from 'typebox/value';
import {
  authChallengeMessage,
  ChallengeResponseSchema,
  DeviceCreatedResponseSchema,
  DeviceListResponseSchema,
  IdentityResponseSchema,
  isAccountId,
  isDeviceId,
  KeyCountsSchema,
  LinkTokenResponseSchema,
  MismatchedAccountSchema,
  PreKeyBundleResponseSchema,
  SEALED_SENDER_V2,
  SendMessagesResponseSchema,
  socketAuthMessage,
  TokenResponseSchema,
  TurnCredentialsSchema,
  type AccountId,
  type ChallengeResponse,
  type DeviceId,
  type DeviceCreatedResponse,
  type DeviceListResponse,
  type IdentityResponse,
  type KemPreKey,
  type KeyCounts,
  type LinkTokenResponse,
  type PreKeyBundleResponse,
  type SendMessagesRequest,
  type SendMultiRecipientRequest,
  type SignedPreKey,
  type SocketSendRequest,
  type TokenResponse,
  type TurnCredentials,
  type UploadKeysRequest,
} from '@privcomm/wire';
import { fromBase64, toBase64 } from './bytes.ts';
import type { SocketAuth } from './connection.ts';
import type { Address, MultiRecipientMessage, PublicPreKey, PublicSignedPreKey } from './engine.ts';
import { ClientError } from './errors.ts';
import { httpRequest, relayErrorCode, type HttpResponse, type Transport } from './transport.ts';

/**
 * The device's Ed25519 authentication key (not its Signal identity). Injected so that each
 * platform keeps it where private keys belong: a 0600 file for the CLI, the Keystore on Android.
 */
export interface AuthSigner {
  publicKey(): Promise<Uint8Array>;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export const wirePreKey = (key: PublicPreKey) => ({
  keyId: key.keyId,
  publicKey: toBase64(key.publicKey),
});
export const wireSignedKey = (key: PublicSignedPreKey): SignedPreKey & KemPreKey => ({
  keyId: key.keyId,
  publicKey: toBase64(key.publicKey),
  signature: toBase64(key.signature),
});

/** The relay's answer to a registration or a link, with its ids branded. */
export type CreatedDevice = Omit<DeviceCreatedResponse, 'accountId' | 'deviceId'> & {
  readonly accountId: AccountId;
  readonly deviceId: DeviceId;
};

type WithDeviceId<T> = T & { readonly deviceId: DeviceId };

/** Prekey bundles of an account's devices (GET /v1/keys), with their device ids branded. */
export type Bundles = Omit<PreKeyBundleResponse, 'devices'> & {
  readonly devices: WithDeviceId<PreKeyBundleResponse['devices'][number]>[];
};
export type BundleDevice = Bundles['devices'][number];

/** This account's devices (GET /v1/devices), with their device ids branded. */
export type DeviceList = Omit<DeviceListResponse, 'devices'> & {
  readonly devices: WithDeviceId<DeviceListResponse['devices'][number]>[];
};

/** One recipient account of a multi upload whose device set differs from the relay's. */
export interface MultiRecipientMismatch {
  readonly accountId: AccountId;
  /** Devices to start sessions with (then include them). */
  readonly missingDevices: DeviceId[];
  /** Devices the account no longer has: drop their sessions (and leave them out). */
  readonly extraDevices: DeviceId[];
  /** Devices re-registered: drop the session, start a new one. */
  readonly staleDevices: DeviceId[];
}

/**
 * The relay's answer to a multi-recipient upload (sendMultiRecipient), typed. Nothing was stored
 * unless `kind` is 'stored': the caller fixes what the answer names and uploads again.
 */
export type MultiRecipientSendResult =
  | { readonly kind: 'stored'; readonly stored: number }
  /** 409 MISMATCHED_DEVICES or 410 STALE_DEVICES: every account whose device set differs. */
  | {
      readonly kind: 'mismatched';
      readonly status: 409 | 410;
      readonly accounts: MultiRecipientMismatch[];
    }
  /** 404: these recipient accounts do not exist (deleted): leave them out. */
  | { readonly kind: 'unknownAccounts'; readonly accountIds: AccountId[] }
  /** 429 QUEUE_FULL: these accounts have a device whose queue is full; or retry later. */
  | {
      readonly kind: 'queueFull';
      readonly accountIds: AccountId[];
      readonly retryAfterSeconds: number;
    }
  /** 429 RATE_LIMITED: this sender's rate or byte budget; retry after the delay. */
  | { readonly kind: 'rateLimited'; readonly retryAfterSeconds: number };

const MismatchedAnswerSchema = Type.Object({ accounts: Type.Array(MismatchedAccountSchema) });
const AccountListSchema = Type.Array(Type.String({ maxLength: 36 }));
const UnknownAnswerSchema = Type.Object({ unknownAccounts: AccountListSchema });
const RetryAnswerSchema = Type.Object({
  retryAfterSeconds: Type.Integer({ minimum: 0, maximum: 86_400 }),
  fullAccounts: Type.Optional(AccountListSchema),
});

/** Account ids from the relay, branded; one that is not an id means the answer is not a relay's. */
const accountIds = (values: readonly string[]): AccountId[] | undefined => {
  const ids = values.filter(isAccountId);
  return ids.length === values.length ? ids : undefined;
};

/**
 * Reads the answer to PUT /v1/messages/multi (exported for tests). undefined when the body does
 * not have the documented shape for its status; other statuses are not read here.
 */
export const parseMultiRecipientAnswer = (
  response: HttpResponse<unknown>,
): MultiRecipientSendResult | undefined => {
  const { status, body } = response;
  const code = relayErrorCode(body);
  if (status === 200) {
    return Value.Check(SendMessagesResponseSchema, body)
      ? { kind: 'stored', stored: body.stored }
      : undefined;
  }
  if ((status === 409 || status === 410) && Value.Check(MismatchedAnswerSchema, body)) {
    // The schema checked every id; the guards (which keep them all) brand them.
    const accounts = body.accounts.map((account) => ({
      accountId: account.accountId as AccountId,
      missingDevices: account.missingDevices.filter(isDeviceId),
      extraDevices: account.extraDevices.filter(isDeviceId),
      staleDevices: account.staleDevices.filter(isDeviceId),
    }));
    return { kind: 'mismatched', status, accounts };
  }
  if (status === 404 && Value.Check(UnknownAnswerSchema, body)) {
    const ids = accountIds(body.unknownAccounts);
    return ids && { kind: 'unknownAccounts', accountIds: ids };
  }
  if (status === 429 && Value.Check(RetryAnswerSchema, body)) {
    const { retryAfterSeconds } = body;
    if (code !== 'QUEUE_FULL') return { kind: 'rateLimited', retryAfterSeconds };
    const ids = accountIds(body.fullAccounts ?? []);
    return ids && { kind: 'queueFull', accountIds: ids, retryAfterSeconds };
  }
  return undefined;
};

/** Refresh a token this long before it expires. */
const REFRESH_MARGIN_MS = 30_000;

/** A send over the message socket: `message.send`, answered as PUT /v1/messages/{accountId}. */
export type SocketSender = (request: SocketSendRequest) => Promise<HttpResponse>;

/**
 * Sends that go over the socket, at most, per second and awaiting their answers. The relay closes
 * a socket that sends more than 200 frames a second on average, pings and the answers to sends
 * included, and answers 429 past 64 sends awaiting their commit (docs/protocol.md): beyond these,
 * sends go over HTTP.
 */
const SOCKET_SENDS_PER_SECOND = 100;
const MAX_SOCKET_SENDS_IN_FLIGHT = 32;

/**
 * The relay's API for one device, with its token kept fresh. Sends go over the message socket
 * while it is open (no token and no HTTP request per send), otherwise over HTTP.
 */
export class RelayApi {
  private token: { value: string; expiresAt: number } | undefined;
  /** Until a relay shows it has none, the socket logs in by signature when no token is fresh. */
  private socketLogin = true;
  private socket: SocketSender | undefined;
  private socketSendsInFlight = 0;
  private readonly socketBudget = { tokens: SOCKET_SENDS_PER_SECOND, atMs: 0 };

  constructor(
    readonly transport: Transport,
    private readonly signer: AuthSigner,
    private readonly now: () => number,
    private device?: Address,
  ) {}

  setDevice(device: Address): void {
    this.device = device;
    this.token = undefined;
  }

  /**
   * How the message socket authenticates: with the current token while it is fresh; otherwise by
   * logging in on the socket itself, whose answer brings the next token, unless the relay was
   * found to have no such login (`noSocketLogin`).
   */
  async socketAuth(): Promise<SocketAuth> {
    const device = this.device;
    if (this.freshToken() !== undefined || !this.socketLogin || !device)
      return { token: await this.currentToken() };
    const { accountId, deviceId } = device;
    return {
      sign: async (nonce) => ({
        accountId,
        deviceId,
        signature: toBase64(await this.signer.sign(socketAuthMessage(accountId, deviceId, nonce))),
      }),
      onToken: (answer) => {
        const expiresAt = Date.parse(answer.expiresAt);
        const same = answer.accountId === accountId && answer.deviceId === deviceId;
        if (same && this.device === device && Number.isFinite(expiresAt))
          this.token = { value: answer.token, expiresAt };
      },
    };
  }

  /** The relay closed a socket opened for a login by signature unchallenged: it has none. */
  noSocketLogin(): void {
    this.socketLogin = false;
  }

  private freshToken(): string | undefined {
    const token = this.token;
    return token && token.expiresAt - REFRESH_MARGIN_MS > this.now() ? token.value : undefined;
  }

  /** A valid token, authenticating again when the current one is about to expire. */
  async currentToken(): Promise<string> {
    const fresh = this.freshToken();
    if (fresh !== undefined) return fresh;
    const device = this.device;
    if (!device) throw new ClientError('NOT_REGISTERED', 'this profile has no account yet');
    const challenge = await this.expect<ChallengeResponse>(
      await httpRequest(this.transport, 'POST', '/v1/auth/challenge', device),
      200,
      ChallengeResponseSchema,
    );
    const nonce = fromBase64(challenge.nonce);
    const signature = await this.signer.sign(
      authChallengeMessage(device.accountId, device.deviceId, nonce),
    );
    const token = await this.expect<TokenResponse>(
      await httpRequest(this.transport, 'POST', '/v1/auth/token', {
        ...device,
        nonce: challenge.nonce,
        signature: toBase64(signature),
      }),
      200,
      TokenResponseSchema,
    );
    this.token = { value: token.token, expiresAt: Date.parse(token.expiresAt) };
    return token.token;
  }

  /** An authenticated request; a 401 (token revoked meanwhile) re-authenticates once. */
  async call<T>(method: string, path: string, body?: unknown): Promise<HttpResponse<T>> {
    const response = await httpRequest<T>(
      this.transport,
      method,
      path,
      body,
      await this.currentToken(),
    );
    if (response.status !== 401) return response;
    this.token = undefined;
    return httpRequest<T>(this.transport, method, path, body, await this.currentToken());
  }

  /**
   * The body of a response with the expected status, checked against its wire schema when one
   * is given; a refusal becomes RELAY_REFUSED, a body of the wrong shape NOT_A_RELAY.
   */
  expect<T>(response: HttpResponse<unknown>, status: number, schema?: TSchema): T {
    if (response.status === status) {
      if (schema !== undefined && !Value.Check(schema, response.body)) {
        throw new ClientError(
          'NOT_A_RELAY',
          `the server at ${this.transport.relayUrl} answered in an unexpected format`,
        );
      }
      return response.body as T;
    }
    const code = relayErrorCode(response.body);
    const message = (response.body as { error?: { message?: string } } | undefined)?.error?.message;
    throw new ClientError(
      'RELAY_REFUSED',
      `the relay refused: ${code ?? `HTTP ${response.status}`}${message ? ` (${message})` : ''}`,
      code,
    );
  }

  async register(body: unknown): Promise<CreatedDevice> {
    return this.createdDevice(
      this.expect(
        await httpRequest(this.transport, 'POST', '/v1/accounts', body),
        200,
        DeviceCreatedResponseSchema,
      ),
    );
  }

  async link(body: unknown): Promise<CreatedDevice> {
    return this.createdDevice(
      this.expect(
        await httpRequest(this.transport, 'POST', '/v1/devices', body),
        200,
        DeviceCreatedResponseSchema,
      ),
    );
  }

  /** The ids the relay assigned, typed by the wire's guards (the schema already checked them). */
  private createdDevice(created: DeviceCreatedResponse): CreatedDevice {
    const { accountId, deviceId } = created;
    if (!isAccountId(accountId) || !isDeviceId(deviceId)) {
      throw new ClientError(
        'NOT_A_RELAY',
        `the server at ${this.transport.relayUrl} answered in an unexpected format`,
      );
    }
    return { ...created, accountId, deviceId };
  }

  async uploadKeys(keys: UploadKeysRequest): Promise<void> {
    this.expect(await this.call('PUT', '/v1/keys', keys), 204);
  }

  async keyCounts(): Promise<KeyCounts> {
    return this.expect(await this.call('GET', '/v1/keys/count'), 200, KeyCountsSchema);
  }

  async bundles(accountId: AccountId, deviceId: DeviceId | '*'): Promise<Bundles> {
    const response = await this.call('GET', `/v1/keys/${accountId}/${deviceId}`);
    if (response.status === 404) {
      throw new ClientError('UNKNOWN_ACCOUNT', `no account ${accountId} on this relay`);
    }
    const bundles = this.expect<PreKeyBundleResponse>(response, 200, PreKeyBundleResponseSchema);
    return { ...bundles, devices: this.withDeviceIds(bundles.devices) };
  }

  async identityKey(accountId: AccountId): Promise<Uint8Array> {
    const response = await this.call<IdentityResponse>('GET', `/v1/accounts/${accountId}/identity`);
    if (response.status === 404) {
      throw new ClientError('UNKNOWN_ACCOUNT', `no account ${accountId} on this relay`);
    }
    return fromBase64(
      this.expect<IdentityResponse>(response, 200, IdentityResponseSchema).identityKey,
    );
  }

  /** Sets (or, with undefined, clears) the open message socket that sends may use. */
  useSocket(send: SocketSender | undefined): void {
    this.socket = send;
  }

  /**
   * One send (PUT /v1/messages/{accountId}, or `message.send` over the open socket: the same
   * answer either way). A socket that closes before answering rejects with RELAY_UNREACHABLE, as a
   * lost HTTP answer does.
   */
  async sendMessages(accountId: AccountId, request: SendMessagesRequest): Promise<HttpResponse> {
    const socket = this.socket;
    if (!socket || !this.takeSocketSend()) {
      return this.call('PUT', `/v1/messages/${accountId}`, request);
    }
    this.socketSendsInFlight += 1;
    let answer: HttpResponse;
    try {
      answer = await socket({ accountId, ...request });
    } finally {
      this.socketSendsInFlight -= 1;
    }
    // A relay from before socket sends refuses the verb (404 NOT_FOUND, not ACCOUNT_NOT_FOUND):
    // this send and the rest on this socket go over HTTP.
    if (answer.status === 404 && relayErrorCode(answer.body) === 'NOT_FOUND') {
      if (this.socket === socket) this.socket = undefined;
      return this.call('PUT', `/v1/messages/${accountId}`, request);
    }
    return answer;
  }

  /** Whether a send may go over the socket now (a token bucket, and a bound on those in flight). */
  private takeSocketSend(): boolean {
    if (this.socketSendsInFlight >= MAX_SOCKET_SENDS_IN_FLIGHT) return false;
    const now = this.now();
    const budget = this.socketBudget;
    budget.tokens = Math.min(
      SOCKET_SENDS_PER_SECOND,
      budget.tokens + ((now - budget.atMs) / 1000) * SOCKET_SENDS_PER_SECOND,
    );
    budget.atMs = now;
    if (budget.tokens < 1) return false;
    budget.tokens -= 1;
    return true;
  }

  /**
   * Uploads one multi-recipient sealed message (the engine's groupEncrypt) for all its recipient
   * devices at once: PUT /v1/messages/multi. Resolves with the relay's answer, typed: stored, or
   * what to fix for which accounts (409/410 device sets, 404 unknown accounts, 429 full queues or
   * rate limits); nothing is stored then. Other refusals (400, 413, or such an answer without
   * its lists) throw RELAY_REFUSED with the relay's code, a malformed 200 NOT_A_RELAY.
   */
  async sendMultiRecipient(
    message: MultiRecipientMessage,
    options: { readonly online?: boolean; readonly urgent?: boolean } = {},
  ): Promise<MultiRecipientSendResult> {
    if (message.type !== SEALED_SENDER_V2) {
      throw new TypeError(
        `a multi-recipient message of type ${message.type}: the relay takes sealed sender v2 (${SEALED_SENDER_V2})`,
      );
    }
    const request: SendMultiRecipientRequest = {
      type: SEALED_SENDER_V2,
      content: toBase64(message.content),
      ...(options.online ? { online: true } : {}),
      ...(options.urgent ? { urgent: true } : {}),
    };
    const response = await this.call('PUT', '/v1/messages/multi', request);
    // Anything else (400, 413, a relay without this route) is a refusal with the relay's code;
    // a 200 of the wrong shape is NOT_A_RELAY.
    return (
      parseMultiRecipientAnswer(response) ?? this.expect(response, 200, SendMessagesResponseSchema)
    );
  }

  async devices(): Promise<DeviceList> {
    const list = this.expect<DeviceListResponse>(
      await this.call('GET', '/v1/devices'),
      200,
      DeviceListResponseSchema,
    );
    return { ...list, devices: this.withDeviceIds(list.devices) };
  }

  /**
   * Items of an answer with their device ids branded by wire's guard. The schema already checked
   * every id, so nothing is dropped; a mismatch would mean the two disagree, refused like a bad
   * shape.
   */
  private withDeviceIds<T extends { deviceId: number }>(items: T[]): WithDeviceId<T>[] {
    const branded = items.filter((item): item is WithDeviceId<T> => isDeviceId(item.deviceId));
    if (branded.length !== items.length) {
      throw new ClientError(
        'NOT_A_RELAY',
        `the server at ${this.transport.relayUrl} answered in an unexpected format`,
      );
    }
    return branded;
  }

  async linkToken(): Promise<LinkTokenResponse> {
    return this.expect(
      await this.call('POST', '/v1/devices/link-tokens'),
      200,
      LinkTokenResponseSchema,
    );
  }

  async removeDevice(deviceId: DeviceId): Promise<void> {
    this.expect(await this.call('DELETE', `/v1/devices/${deviceId}`), 204);
  }

  async deleteAccount(): Promise<void> {
    this.expect(await this.call('DELETE', '/v1/accounts/me'), 204);
  }

  /** GET /v1/turn: short-lived TURN credentials, fetched at each call setup. */
  async turnCredentials(): Promise<TurnCredentials> {
    return this.expect(await this.call('GET', '/v1/turn'), 200, TurnCredentialsSchema);
  }

  async provision(address: string, content: Uint8Array): Promise<void> {
    this.expect(
      await this.call('PUT', `/v1/provisioning/${address}`, { content: toBase64(content) }),
      202,
    );
  }
}
