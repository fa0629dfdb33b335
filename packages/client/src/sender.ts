import type { AccountId, DeviceId } from '@privcomm/wire';
import { fromBase64, toBase64 } from './bytes.ts';
import type { Address, RemoteBundle, SignalEngine } from './engine.ts';
import { ClientError } from './errors.ts';
import { parseDeviceSetChange, parseRetryAfter, type DeviceSetChange } from './incoming.ts';
import type { ClientLogger } from './logger.ts';
import type { BundleDevice, Bundles, RelayApi } from './relay-api.ts';
import { relayErrorCode } from './transport.ts';

/** Device-set corrections (409/410) tolerated per send, as Signal's clients do. */
const MAX_DEVICE_SET_RETRIES = 3;
/** Network failures and 5xx tolerated per send before it is left in the outbox. */
const MAX_NETWORK_RETRIES = 4;
/** A 429 asking for at most this long is waited out; longer ones fail the send. */
const MAX_RATE_LIMIT_WAIT_MS = 5_000;

export interface SendOptions {
  readonly online?: boolean;
  readonly urgent?: boolean;
}

export interface SenderDeps {
  readonly api: Pick<RelayApi, 'bundles' | 'devices' | 'sendMessages' | 'expect'>;
  readonly engine: SignalEngine;
  readonly sleep: (ms: number) => Promise<void>;
  readonly logger: ClientLogger;
  /** The relay said an account's device set changed (409/410), after the sessions were fixed. */
  readonly onDeviceSetChange?: (accountId: AccountId, change: DeviceSetChange) => void;
}

export const toRemoteBundle = (response: Bundles, device: BundleDevice): RemoteBundle => ({
  identityKey: fromBase64(response.identityKey),
  deviceId: device.deviceId,
  registrationId: device.registrationId,
  signedPreKey: {
    keyId: device.signedPreKey.keyId,
    publicKey: fromBase64(device.signedPreKey.publicKey),
    signature: fromBase64(device.signedPreKey.signature),
  },
  ...(device.preKey && {
    preKey: { keyId: device.preKey.keyId, publicKey: fromBase64(device.preKey.publicKey) },
  }),
  kyberPreKey: {
    keyId: device.kyberPreKey.keyId,
    publicKey: fromBase64(device.kyberPreKey.publicKey),
    signature: fromBase64(device.kyberPreKey.signature),
  },
});

/**
 * Encrypts one plaintext for every device of an account and hands the set to the relay,
 * repairing sessions when the relay says the device set changed: sessions of extra or stale
 * devices are dropped, bundles of missing or stale ones fetched, and the send retried.
 */
export class Sender {
  constructor(
    private readonly deps: SenderDeps,
    private readonly self: () => Address,
  ) {}

  /** Starts sessions with the given devices of an account (all of them with '*'). */
  async establish(accountId: AccountId, deviceId: DeviceId | '*'): Promise<DeviceId[]> {
    const response = await this.deps.api.bundles(accountId, deviceId);
    const self = this.self();
    const started: DeviceId[] = [];
    for (const device of response.devices) {
      if (accountId === self.accountId && device.deviceId === self.deviceId) continue;
      await this.deps.engine.processBundle(
        { accountId, deviceId: device.deviceId },
        toRemoteBundle(response, device),
      );
      started.push(device.deviceId);
    }
    return started;
  }

  /** The devices to encrypt for: those with sessions, or (first contact) all of the account's. */
  private async targets(accountId: AccountId): Promise<DeviceId[]> {
    const self = this.self();
    const sessions = (await this.deps.engine.sessionDeviceIds(accountId)).filter(
      (deviceId) => !(accountId === self.accountId && deviceId === self.deviceId),
    );
    if (sessions.length > 0) return sessions;
    if (accountId === self.accountId) {
      const others = (await this.deps.api.devices()).devices.filter(
        (d) => d.deviceId !== self.deviceId,
      );
      if (others.length === 0) return [];
    }
    return this.establish(accountId, '*');
  }

  /** Returns true when the relay accepted it (false: nobody to send to, e.g. no other own device). */
  async send(
    accountId: AccountId,
    plaintext: Uint8Array,
    options: SendOptions = {},
  ): Promise<boolean> {
    let deviceSetRetries = 0;
    let networkRetries = 0;
    for (;;) {
      const targets = await this.targets(accountId);
      if (targets.length === 0) return false;
      const messages = [];
      for (const deviceId of targets) {
        const encrypted = await this.deps.engine.encrypt({ accountId, deviceId }, plaintext);
        messages.push({
          deviceId,
          registrationId: encrypted.registrationId,
          type: encrypted.type,
          content: toBase64(encrypted.content),
        });
      }
      let response;
      try {
        response = await this.deps.api.sendMessages(accountId, {
          messages,
          ...(options.online ? { online: true } : {}),
          ...(options.urgent ? { urgent: true } : {}),
        });
      } catch (error) {
        if (!(error instanceof ClientError) || error.code !== 'RELAY_UNREACHABLE') throw error;
        if (++networkRetries > MAX_NETWORK_RETRIES) throw error;
        await this.deps.sleep(500 * 2 ** networkRetries);
        continue;
      }
      switch (response.status) {
        case 200:
          return true;
        case 404:
          throw new ClientError('UNKNOWN_ACCOUNT', `no account ${accountId} on this relay`);
        case 409:
        case 410: {
          const change = parseDeviceSetChange(response.status, response.body);
          if (!change.ok) {
            this.deps.logger.log('warn', 'send answer refused', change.reason);
            throw new ClientError(
              'NOT_A_RELAY',
              'the relay answered a send with a malformed device list',
            );
          }
          if (++deviceSetRetries > MAX_DEVICE_SET_RETRIES) {
            throw new ClientError(
              'SEND_FAILED',
              'the recipient’s devices kept changing; try again',
            );
          }
          const { missing, extra, stale } = change.value;
          for (const deviceId of [...extra, ...stale]) {
            await this.deps.engine.deleteSession({ accountId, deviceId });
          }
          for (const deviceId of [...missing, ...stale]) {
            await this.establish(accountId, deviceId);
          }
          this.deps.onDeviceSetChange?.(accountId, change.value);
          continue;
        }
        case 429: {
          // RATE_LIMITED (this sender's budget) or QUEUE_FULL (the recipient's queue): a short
          // wait is waited out; a longer one fails the send, which the outbox retries later.
          const waitMs = parseRetryAfter(response.body) * 1000;
          if (waitMs > MAX_RATE_LIMIT_WAIT_MS || ++networkRetries > MAX_NETWORK_RETRIES) {
            const code = relayErrorCode(response.body) ?? 'RATE_LIMITED';
            throw new ClientError(
              'RELAY_REFUSED',
              code === 'QUEUE_FULL'
                ? 'the recipient’s queue on the relay is full; the message will be retried'
                : 'the relay is rate-limiting this device',
              code,
            );
          }
          await this.deps.sleep(waitMs);
          continue;
        }
        default:
          if (response.status >= 500 && ++networkRetries <= MAX_NETWORK_RETRIES) {
            await this.deps.sleep(500 * 2 ** networkRetries);
            continue;
          }
          this.deps.api.expect(response, 200);
          throw new ClientError(
            'SEND_FAILED',
            `unexpected answer ${response.status}`,
            relayErrorCode(response.body),
          );
      }
    }
  }
}
