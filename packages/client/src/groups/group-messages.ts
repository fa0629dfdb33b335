/**
 * Messages in a group, with sender keys: this device encrypts each message once with its own
 * sender key for the group (libsignal's groupEncrypt) and uploads one multi-recipient sealed
 * message for every member device (PUT /v1/messages/multi), which the relay splits into ordinary
 * envelopes. The sender key itself goes to each member device pairwise ('sender-key'), before the
 * first message that device needs it for, and never to a removed member: after every removal this
 * device starts a new key (rotateAfterRemoval), so what it sends next is unreadable to them.
 *
 * This account's own other devices are not among the upload's recipients: they get the message
 * as a pairwise copy at a random later time (sync-copies.ts), so that the relay cannot link the
 * upload to them.
 */

import type { AccountId, DeviceId } from '@privcomm/wire';
import { toBase64 } from '../bytes.ts';
import { encodeContent, groupContent, type Content, type GroupInner } from '../content.ts';
import { UntrustedIdentityError, type Address, type SignalEngine } from '../engine.ts';
import { ClientError } from '../errors.ts';
import type { ClientLogger } from '../logger.ts';
import type { MultiRecipientSendResult, RelayApi } from '../relay-api.ts';
import type { ClientStore, OwnSenderKey } from '../store.ts';
import { currentState } from './group-log.ts';
import { memberOf, type GroupId, type GroupState } from './group-state.ts';

/** Device-set corrections (409/410) per upload, as for a one-to-one send. */
const MAX_DEVICE_SET_RETRIES = 3;

export interface GroupMessagesDeps {
  readonly store: ClientStore;
  readonly engine: SignalEngine;
  readonly api: Pick<RelayApi, 'sendMultiRecipient'>;
  /** Pairwise sends (sender.ts): the sender key, key requests. */
  send(to: AccountId, plaintext: Uint8Array): Promise<boolean>;
  /** Starts sessions with the given devices of an account (all with '*'). */
  establish(accountId: AccountId, deviceId: DeviceId | '*'): Promise<DeviceId[]>;
  queueCopy(content: Content): Promise<void>;
  self(): Address;
  newId(): string;
  now(): number;
  readonly logger: ClientLogger;
}

/** Whom a group send reached, and whom it left out (retryMessage sends to them). */
export interface GroupSendResult {
  readonly reached: readonly AccountId[];
  readonly missed: readonly AccountId[];
}

const deviceKey = (address: Address): string => `${address.accountId}.${address.deviceId}`;

export class GroupMessages {
  constructor(private readonly deps: GroupMessagesDeps) {}

  /** The current state of a group this account is a member of; UNKNOWN_GROUP otherwise. */
  async memberState(groupId: GroupId): Promise<GroupState> {
    const group = await this.deps.store.group(groupId);
    const state = group && currentState(group.log);
    if (!state) throw new ClientError('UNKNOWN_GROUP', `no group ${groupId} here`);
    if (!memberOf(state, this.deps.self().accountId)) {
      throw new ClientError('UNKNOWN_GROUP', 'you are no longer a member of that group');
    }
    return state;
  }

  /**
   * Sends `inner` to every other member's devices (or to the members in `only`: a retry) with
   * this device's sender key, then queues the copy for this account's other devices (not for a
   * retry: they got it with the first send). Resolves once the relay stored it, with the members
   * it reached and those it left out: a verified member whose safety number changed gets nothing
   * until the change is accepted (as in a one-to-one conversation), and does not hold back the
   * others.
   */
  async send(
    groupId: GroupId,
    inner: GroupInner,
    options: { online?: boolean; only?: readonly AccountId[] } = {},
  ): Promise<GroupSendResult> {
    const state = await this.memberState(groupId);
    const content = groupContent(groupId, inner);
    const plaintext = encodeContent(content);
    const self = this.deps.self();
    const { only } = options;
    let accounts = state.members
      .map((m) => m.accountId)
      .filter((a) => a !== self.accountId && (only === undefined || only.includes(a)));
    const missed: AccountId[] = [];
    const leaveOut = (error: unknown): void => {
      const account =
        error instanceof UntrustedIdentityError && accounts.find((a) => a === error.accountId);
      if (!account) throw error;
      missed.push(account);
      accounts = accounts.filter((a) => a !== account);
    };
    const key = await this.ownKey(groupId);
    for (let retries = 0; accounts.length > 0;) {
      let answer: MultiRecipientSendResult;
      try {
        const devices = await this.devicesOf(accounts);
        await this.shareKey(key, groupId, devices);
        const message = await this.deps.engine.groupEncrypt(key.distributionId, devices, plaintext);
        answer = await this.deps.api.sendMultiRecipient(message, options);
      } catch (error) {
        leaveOut(error);
        continue;
      }
      if (answer.kind === 'stored') break;
      if (answer.kind === 'unknownAccounts') {
        // Deleted accounts: left out (their membership ends with the next admin's change).
        const gone = new Set<string>(answer.accountIds);
        accounts = accounts.filter((a) => !gone.has(a));
        continue;
      }
      if (answer.kind === 'queueFull' || answer.kind === 'rateLimited') {
        throw new ClientError(
          'RELAY_REFUSED',
          answer.kind === 'queueFull'
            ? 'a member’s queue on the relay is full; send again later'
            : 'the relay is rate-limiting this device; send again later',
          answer.kind === 'queueFull' ? 'QUEUE_FULL' : 'RATE_LIMITED',
        );
      }
      if (++retries > MAX_DEVICE_SET_RETRIES) {
        throw new ClientError('SEND_FAILED', 'the members’ devices kept changing; try again');
      }
      await this.repairDevices(key, answer.accounts).catch(leaveOut);
    }
    const copy = only === undefined && accounts.length > 0;
    if (copy && inner.kind !== 'typing' && inner.kind !== 'receipt') {
      await this.deps.queueCopy(content);
    }
    return { reached: accounts, missed };
  }

  /** After a 409/410: sessions of extra and stale devices dropped, new ones started. */
  private async repairDevices(
    key: OwnSenderKey,
    accounts: Extract<MultiRecipientSendResult, { kind: 'mismatched' }>['accounts'],
  ): Promise<void> {
    for (const account of accounts) {
      const { accountId } = account;
      for (const deviceId of [...account.extraDevices, ...account.staleDevices]) {
        await this.deps.engine.deleteSession({ accountId, deviceId });
      }
      // A re-registered or new device has no copy of the key yet.
      await this.deps.store.removeSenderKeyRecipients(
        key.distributionId,
        [...account.staleDevices, ...account.missingDevices].map((deviceId) =>
          deviceKey({ accountId, deviceId }),
        ),
      );
      for (const deviceId of [...account.missingDevices, ...account.staleDevices]) {
        await this.deps.establish(accountId, deviceId);
      }
    }
  }

  /** This device's sender key for the group, made on first use. */
  private async ownKey(groupId: GroupId): Promise<OwnSenderKey> {
    const existing = await this.deps.store.ownSenderKey(groupId);
    if (existing) return existing;
    const key = { groupId, distributionId: this.deps.newId(), createdAt: this.deps.now() };
    await this.deps.store.saveOwnSenderKey(key);
    return key;
  }

  /**
   * A member's removal (or leave): this device's next message uses a new sender key, which the
   * remaining members get pairwise and the one who left never does.
   */
  async rotateAfterRemoval(groupId: GroupId): Promise<void> {
    if (!(await this.deps.store.ownSenderKey(groupId))) return;
    await this.deps.store.saveOwnSenderKey({
      groupId,
      distributionId: this.deps.newId(),
      createdAt: this.deps.now(),
    });
  }

  /** Every device of these accounts this device has a session with (starting them if none). */
  private async devicesOf(accounts: readonly AccountId[]): Promise<Address[]> {
    const devices: Address[] = [];
    for (const accountId of accounts) {
      let ids = await this.deps.engine.sessionDeviceIds(accountId);
      if (ids.length === 0) ids = await this.deps.establish(accountId, '*');
      for (const deviceId of ids) devices.push({ accountId, deviceId });
    }
    return devices;
  }

  /** Sends the sender key pairwise to the accounts with a device that does not have it yet. */
  private async shareKey(
    key: OwnSenderKey,
    groupId: GroupId,
    devices: readonly Address[],
  ): Promise<void> {
    const have = new Set(await this.deps.store.senderKeyRecipients(key.distributionId));
    const lacking = new Set(devices.filter((d) => !have.has(deviceKey(d))).map((d) => d.accountId));
    if (lacking.size === 0) return;
    const message = toBase64(await this.deps.engine.senderKeyDistribution(key.distributionId));
    for (const accountId of lacking) {
      await this.sendKeyTo(accountId, key, groupId, message);
    }
  }

  private async sendKeyTo(
    accountId: AccountId,
    key: OwnSenderKey,
    groupId: GroupId,
    message: string,
  ): Promise<void> {
    const content: Content = {
      kind: 'sender-key',
      id: this.deps.newId(),
      sentAt: this.deps.now(),
      groupId,
      distributionId: key.distributionId,
      message,
    };
    await this.deps.send(accountId, encodeContent(content));
    // Every device the pairwise send went to (the sender fixed the device set if it changed).
    const ids = await this.deps.engine.sessionDeviceIds(accountId);
    await this.deps.store.addSenderKeyRecipients(
      key.distributionId,
      ids.map((deviceId) => deviceKey({ accountId, deviceId })),
    );
  }

  /**
   * A member device could not decrypt a message under one of this device's keys: its copy of
   * the key was lost or late. Sent again, to members only, and only for the current key (an old
   * one was retired by a removal).
   */
  async answerKeyRequest(requester: Address, distributionId: string): Promise<void> {
    const key = await this.deps.store.ownSenderKeyByDistribution(distributionId);
    if (!key) {
      this.deps.logger.log('info', 'sender key request ignored', 'not a current key');
      return;
    }
    const group = await this.deps.store.group(key.groupId);
    const state = group && currentState(group.log);
    if (!state || !memberOf(state, requester.accountId)) {
      this.deps.logger.log('warn', 'sender key request refused', 'not a member');
      return;
    }
    await this.deps.store.removeSenderKeyRecipients(distributionId, [deviceKey(requester)]);
    const message = toBase64(await this.deps.engine.senderKeyDistribution(distributionId));
    await this.sendKeyTo(requester.accountId, key, key.groupId, message);
  }

  /** Asks a member for its sender key (a message under it could not be decrypted). */
  async requestKey(sender: Address, distributionId: string): Promise<void> {
    const content: Content = {
      kind: 'sender-key-request',
      id: this.deps.newId(),
      sentAt: this.deps.now(),
      distributionId,
    };
    await this.deps.send(sender.accountId, encodeContent(content));
  }
}
