import type { TSchema } from 'typebox';
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
  PreKeyBundleResponseSchema,
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
  type SignedPreKey,
  type TokenResponse,
  type TurnCredentials,
  type UploadKeysRequest,
} from '@privcomm/wire';
import { fromBase64, toBase64 } from './bytes.ts';
import type { Address, PublicPreKey, PublicSignedPreKey } from './engine.ts';
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

/** Refresh a token this long before it expires. */
const REFRESH_MARGIN_MS = 30_000;

/** The relay's HTTP API for one device, with its token kept fresh. */
export class RelayApi {
  private token: { value: string; expiresAt: number } | undefined;

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

  /** A valid token, authenticating again when the current one is about to expire. */
  async currentToken(): Promise<string> {
    if (this.token && this.token.expiresAt - REFRESH_MARGIN_MS > this.now())
      return this.token.value;
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

  sendMessages(accountId: AccountId, request: SendMessagesRequest): Promise<HttpResponse<unknown>> {
    return this.call('PUT', `/v1/messages/${accountId}`, request);
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
