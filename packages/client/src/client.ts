import {
  isAccountId,
  MAX_TEXT_BYTES,
  PRIMARY_DEVICE_ID,
  type AccountId,
  type DeviceId,
} from '@privcomm/wire';
import { toBase64 } from './bytes.ts';
import { CallManager, type CallOptions } from './calls/call-manager.ts';
import { NO_SOCKET_LOGIN, RelayConnection, type ConnectionHandlers } from './connection.ts';
import { formatContactLink, parseContactLink, relayKey } from './contact-link.ts';
import {
  decodeContent,
  encodeContent,
  MAX_SYNCED_CONTACTS,
  textBytes,
  type CallSignal,
  type Content,
} from './content.ts';
import type { Address, IdentityState, SafetyNumber, SignalEngine } from './engine.ts';
import { ClientError, isRetryable } from './errors.ts';
import { GroupManager, type GroupSummary } from './groups/group-manager.ts';
import { GroupMessages } from './groups/group-messages.ts';
import { GroupTexts } from './groups/group-texts.ts';
import { isGroupId, type GroupIntent } from './groups/group-state.ts';
import type { ClientEvent, ConnectionStatus } from './events.ts';
import { maintainKeys, newDeviceKeys } from './key-upkeep.ts';
import { addDevice, startLink } from './linking.ts';
import { noopLogger, reasonOf, type ClientLogger } from './logger.ts';
import { sendThroughOutbox } from './outbox.ts';
import { Receiver } from './receiver.ts';
import { Reconnector } from './reconnector.ts';
import { PhoneDiscovery } from './discovery/phone-discovery.ts';
import { RelayApi, type AuthSigner } from './relay-api.ts';
import { Sender, type SendOptions } from './sender.ts';
import {
  checkSyncCopyDelay,
  DEFAULT_SYNC_COPY_DELAY,
  SyncCopies,
  type SyncCopyDelay,
} from './sync-copies.ts';
import {
  loadBlocked,
  loadSettings,
  saveBlocked,
  saveSettings,
  type ClientSettings,
} from './settings.ts';
import {
  saveTimer,
  type ClientStore,
  type Contact,
  type Profile,
  type StoredMessage,
} from './store.ts';
import type { Transport } from './transport.ts';

export type { ClientEvent, ConnectionState, ConnectionStatus } from './events.ts';

export interface ClientDeps {
  readonly transport: Transport;
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  readonly signer: AuthSigner;
  /** Random bytes from a CSPRNG (message ids). */
  readonly randomBytes: (length: number) => Uint8Array;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** A number in [0, 1) for the reconnection jitter (Math.random by default). */
  readonly random?: () => number;
  /** Where the core says what it refused or retried (nothing by default); see logger.ts. */
  readonly logger?: ClientLogger;
  /** WebRTC, default audio and call settings (calls/). */
  readonly calls?: CallOptions;
  /**
   * How long a copy to this account's other devices waits before it is sent: a random time in
   * this window, drawn from `randomBytes` for each copy (sync-copies.ts). Default 10 s to 3 min.
   */
  readonly syncCopyDelay?: SyncCopyDelay;
}

export interface ConversationSummary {
  readonly accountId: AccountId;
  /** The contact's name; absent for a message request. */
  readonly name?: string;
  /** The latest message, with its delivery state (`status`). */
  readonly lastMessage?: StoredMessage;
  /** Received messages not read yet. */
  readonly unread: number;
  /**
   * A message request: someone who is not a contact wrote. Accept with `addContact`, or
   * `block` them, or `deleteConversation`.
   */
  readonly request: boolean;
}

/** What an interface renders: everything the core knows, as plain data. */
export interface ClientSnapshot {
  readonly profile: Profile | undefined;
  readonly contacts: Contact[];
  /**
   * One entry per contact and per message request (blocked accounts left out), with its latest message (and
   * its delivery state) and unread count, newest first.
   */
  readonly conversations: ConversationSummary[];
  /** The connection kept by `start` (offline when not started). */
  readonly connection: ConnectionStatus;
  readonly settings: ClientSettings;
  /** Accounts this device blocked. */
  readonly blocked: AccountId[];
  /** Groups this device knows (also those it left: their history stays), by title. */
  readonly groups: GroupSummary[];
}

export type SafetyState = 'verified' | 'not-verified' | 'changed';

/**
 * What a safety number's QR code holds: the 60 digits, which both phones compute alike, so that
 * scanning the other phone's code compares them (`verifyScanned`).
 */
export const safetyNumberCode = (digits: string): string => `privcomm-safety-number:${digits}`;

const uuidFrom = (bytes: Uint8Array): string => {
  const b = Uint8Array.from(bytes.subarray(0, 16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

/**
 * The client core: one device of one account. Interfaces (the CLI, the Android app) drive it
 * through these methods and render what `subscribe` and `snapshot` give them; they never reach
 * into the engine, the store or the transport themselves.
 */
export class PrivcommClient {
  private readonly api: RelayApi;
  private readonly sender: Sender;
  private readonly receiver: Receiver;
  private readonly syncCopies: SyncCopies;
  private readonly groupManager: GroupManager;
  private readonly groupMessages: GroupMessages;
  private readonly groupTexts: GroupTexts;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly logger: ClientLogger;
  private readonly listeners = new Set<(event: ClientEvent) => void>();
  private profileValue: Profile | undefined;
  private connection: RelayConnection | undefined;
  private reconnector: Reconnector | undefined;
  /** The last state the reconnector reported ('stopped' stays until the next `start`). */
  private connectionStatus: ConnectionStatus = { state: 'offline' };
  private settingsValue: ClientSettings;
  private readonly blocked: Set<AccountId>;
  /** Set by `start`: owed receipts go out as soon as the received envelopes are handled. */
  private sendReceiptsWhenIdle = false;
  /** Voice calls: place, answer, decline, hang up; state and summaries as events. */
  readonly calls: CallManager;
  /** Phone numbers: find accounts by number, publish or remove this account's number. */
  readonly discovery: PhoneDiscovery;

  private constructor(
    private readonly deps: ClientDeps,
    profile: Profile | undefined,
    settings: ClientSettings,
    blocked: Set<AccountId>,
  ) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.logger = deps.logger ?? noopLogger;
    this.profileValue = profile;
    this.settingsValue = settings;
    this.blocked = blocked;
    this.api = new RelayApi(
      deps.transport,
      deps.signer,
      this.now,
      profile && { accountId: profile.accountId, deviceId: profile.deviceId },
    );
    this.discovery = new PhoneDiscovery({ api: this.api, randomBytes: deps.randomBytes });
    this.sender = new Sender(
      {
        api: this.api,
        engine: deps.engine,
        sleep: this.sleep,
        logger: this.logger,
        onDeviceSetChange: (accountId, change) => {
          if (accountId !== this.profileValue?.accountId) return;
          for (const deviceId of change.missing) this.emit({ type: 'device-joined', deviceId });
          for (const deviceId of change.extra) this.emit({ type: 'device-removed', deviceId });
        },
      },
      () => this.self(),
    );
    this.syncCopies = new SyncCopies({
      store: deps.store,
      sender: this.sender,
      self: () => this.self().accountId,
      now: this.now,
      randomBytes: deps.randomBytes,
      newId: () => this.newId(),
      delay: checkSyncCopyDelay(deps.syncCopyDelay ?? DEFAULT_SYNC_COPY_DELAY),
      logger: this.logger,
    });
    this.calls = new CallManager(
      {
        send: (to, callId, signal, options) => this.sendCallSignal(to, callId, signal, options),
        turnCredentials: () => this.api.turnCredentials(),
        identityState: (accountId) => deps.engine.identityState(accountId),
        self: () => this.self(),
        randomBytes: deps.randomBytes,
        now: this.now,
      },
      { ...deps.calls, alwaysRelay: deps.calls?.alwaysRelay === true || settings.relayOnlyCalls },
    );
    this.groupMessages = new GroupMessages({
      store: deps.store,
      engine: deps.engine,
      api: this.api,
      send: (to, plaintext) => this.sender.send(to, plaintext),
      establish: (accountId, deviceId) => this.sender.establish(accountId, deviceId),
      queueCopy: (content) => this.syncCopies.queueOwn(content),
      self: () => this.self(),
      newId: () => this.newId(),
      now: this.now,
      logger: this.logger,
    });
    this.groupManager = new GroupManager({
      store: deps.store,
      send: (to, plaintext) => this.sender.send(to, plaintext),
      queueCopy: (content) => this.syncCopies.queueOwn(content),
      self: () => this.self(),
      newId: () => this.newId(),
      now: this.now,
      randomBytes: deps.randomBytes,
      emit: (event) => this.emit(event),
      membersGone: (groupId) => this.groupMessages.rotateAfterRemoval(groupId),
      logger: this.logger,
    });
    this.groupTexts = new GroupTexts({
      store: deps.store,
      messages: this.groupMessages,
      self: () => this.self(),
      newId: () => this.newId(),
      now: this.now,
      readReceipts: () => this.settingsValue.readReceipts,
      sendReadReceipt: (author, messageIds, groupId) =>
        this.sendContent(author, this.receipt('read', messageIds, groupId)),
    });
    const groups = this.groupManager;
    const messages = this.groupMessages;
    this.receiver = new Receiver({
      engine: deps.engine,
      store: deps.store,
      identityKey: (accountId) => this.api.identityKey(accountId),
      calls: this.calls,
      groups: {
        receive: (sender, change) => groups.receive(sender, change),
        isMember: (groupId, accountId) => groups.isMember(groupId, accountId),
        info: (groupId) => groups.info(groupId),
        answerKeyRequest: (requester, id) => messages.answerKeyRequest(requester, id),
        requestKey: (sender, id) => messages.requestKey(sender, id),
      },
      self: () => this.self(),
      isBlocked: (accountId) => this.blocked.has(accountId),
      typingIndicators: () => this.settingsValue.typingIndicators,
      now: this.now,
      emit: (event) => this.emit(event),
      logger: this.logger,
    });
    this.calls.subscribe((event) => this.emit(event));
  }

  static async open(deps: ClientDeps): Promise<PrivcommClient> {
    const logger = deps.logger ?? noopLogger;
    return new PrivcommClient(
      deps,
      await deps.store.profile(),
      await loadSettings(deps.store, logger),
      await loadBlocked(deps.store, logger),
    );
  }

  get profile(): Profile | undefined {
    return this.profileValue;
  }

  private self(): Address {
    const profile = this.profileValue;
    if (!profile)
      throw new ClientError('NOT_REGISTERED', 'no account yet: run register or link first');
    return { accountId: profile.accountId, deviceId: profile.deviceId };
  }

  subscribe(listener: (event: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: ClientEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        // An interface's bug must not stop the core in the middle of an envelope.
        this.logger.log('error', 'event listener failed', reasonOf(error));
      }
    }
  }

  async snapshot(): Promise<ClientSnapshot> {
    await this.purgeExpired();
    const { store } = this.deps;
    const contacts = await store.contacts();
    const names = new Map<string, string>(contacts.map((c) => [c.accountId, c.name]));
    const self = this.profileValue?.accountId;
    const ids = new Set<AccountId>(
      contacts.map((c) => c.accountId).filter((id) => !this.blocked.has(id)),
    );
    // Someone who is not a contact but wrote: a message request (the store keeps what arrived).
    for (const id of await store.conversationIds())
      if (isAccountId(id) && id !== self && !this.blocked.has(id)) ids.add(id);
    const conversations = await Promise.all(
      [...ids].map(async (accountId): Promise<ConversationSummary> => {
        const messages = await store.messages(accountId);
        const lastMessage = messages.at(-1);
        const name = names.get(accountId);
        return {
          accountId,
          ...(name === undefined ? {} : { name }),
          ...(lastMessage === undefined ? {} : { lastMessage }),
          unread: messages.filter((m) => m.direction === 'in' && m.status !== 'read').length,
          request: name === undefined,
        };
      }),
    );
    conversations.sort(
      (a, b) => (b.lastMessage?.receivedAt ?? 0) - (a.lastMessage?.receivedAt ?? 0),
    );
    return {
      profile: this.profileValue,
      contacts,
      conversations,
      connection: this.connectionStatus,
      settings: this.settingsValue,
      blocked: [...this.blocked],
      groups: this.profileValue ? await this.groupManager.list() : [],
    };
  }

  // ---- groups ------------------------------------------------------------------------------

  /**
   * Creates a group with this account as its admin; `members` are contact names or account ids.
   * Every member learns of it in an end-to-end encrypted message; the relay sees none of it.
   */
  async createGroup(title: string, members: readonly string[]): Promise<GroupSummary> {
    const accounts = await Promise.all(members.map((m) => this.resolve(m)));
    return this.groupManager.create(title, accounts);
  }

  /** Groups this device knows, by title. */
  groups(): Promise<GroupSummary[]> {
    return this.groupManager.list();
  }

  /** A group by its title or id (`resolveGroup`). */
  async groupInfo(titleOrId: string): Promise<GroupSummary> {
    return this.groupManager.info(await this.groupManager.resolve(titleOrId));
  }

  /** A group's id from its title or id; UNKNOWN_GROUP when none or several match. */
  resolveGroup(titleOrId: string): Promise<string> {
    return this.groupManager.resolve(titleOrId);
  }

  /** Adds members (contact names or account ids); admins only (GroupError NOT_ALLOWED). */
  async addToGroup(group: string, members: readonly string[]): Promise<GroupSummary> {
    const accounts = await Promise.all(members.map((m) => this.resolve(m)));
    return this.changeGroup(group, { action: 'add', accounts });
  }

  /** Removes members; admins only. */
  async removeFromGroup(group: string, members: readonly string[]): Promise<GroupSummary> {
    const accounts = await Promise.all(members.map((m) => this.resolve(m)));
    return this.changeGroup(group, { action: 'remove', accounts });
  }

  /** Makes members admins; admins only. */
  async promoteInGroup(group: string, members: readonly string[]): Promise<GroupSummary> {
    const accounts = await Promise.all(members.map((m) => this.resolve(m)));
    return this.changeGroup(group, { action: 'promote', accounts });
  }

  /** Leaves a group (anyone may); its history stays on this device. */
  leaveGroup(group: string): Promise<GroupSummary> {
    return this.changeGroup(group, { action: 'leave' });
  }

  /** Renames a group (any member may). */
  setGroupTitle(group: string, title: string): Promise<GroupSummary> {
    return this.changeGroup(group, { action: 'title', title });
  }

  /**
   * Sends a text to a group: once, encrypted with this device's sender key, in one upload for
   * every member device (groups/group-messages.ts). Stored first ("sending") and kept in the
   * outbox, as a one-to-one text is, until the relay has it ("sent"); "failed" if it refused for
   * good.
   */
  async sendGroupText(group: string, text: string): Promise<StoredMessage> {
    if (textBytes(text) > MAX_TEXT_BYTES)
      throw new ClientError(
        'TEXT_TOO_LONG',
        `the text is too long: a text may be at most ${MAX_TEXT_BYTES} bytes (UTF-8; a line break counts 2), this one has ${textBytes(text)}`,
      );
    return this.groupTexts.send(await this.groupManager.resolve(group), text);
  }

  /** Deletes a message this device's account sent to a group, for every member. */
  async deleteInGroup(group: string, messageId: string): Promise<void> {
    const groupId = await this.groupManager.resolve(group);
    const message = await this.deps.store.message(groupId, messageId);
    if (!message || message.direction !== 'out') {
      throw new ClientError('NOT_RETRYABLE', `no message ${messageId} sent by you in that group`);
    }
    await this.groupTexts.sendToAll(groupId, {
      kind: 'delete',
      id: this.newId(),
      sentAt: this.now(),
      target: messageId,
    });
    await this.deps.store.updateMessage(groupId, messageId, { deleted: true, text: '' });
  }

  /** Typing in a group: online only, never stored; none with the setting off. */
  async sendGroupTyping(group: string, typing: boolean): Promise<void> {
    if (!this.settingsValue.typingIndicators) return;
    const groupId = await this.groupManager.resolve(group);
    await this.groupMessages.send(
      groupId,
      { kind: 'typing', id: this.newId(), sentAt: this.now(), typing },
      { online: true },
    );
  }

  /** Sets a group's disappearing-message timer for every member (0 turns it off). */
  async setGroupDisappearing(group: string, expireSeconds: number): Promise<void> {
    const groupId = await this.groupManager.resolve(group);
    await this.groupTexts.sendToAll(groupId, {
      kind: 'timer',
      id: this.newId(),
      sentAt: this.now(),
      expireSeconds,
    });
    const stored = await this.deps.store.group(groupId);
    if (stored) await this.deps.store.saveGroup({ ...stored, expireSeconds });
  }

  /** A group's messages, oldest first (a group by title or id). */
  async groupHistory(group: string): Promise<StoredMessage[]> {
    return this.history(await this.groupManager.resolve(group));
  }

  /**
   * Marks a group's received messages read and tells each author pairwise, as `markRead` does
   * (groups/group-texts.ts).
   */
  async markGroupRead(group: string): Promise<number> {
    return this.groupTexts.markRead(await this.groupManager.resolve(group));
  }

  /** A receipt content; for messages in a group with `groupId` (groups/group-receipts.ts). */
  private receipt(receipt: 'delivered' | 'read', messageIds: string[], groupId?: string): Content {
    return {
      kind: 'receipt',
      id: this.newId(),
      sentAt: this.now(),
      receipt,
      messageIds,
      ...(groupId === undefined ? {} : { groupId }),
    };
  }

  private async changeGroup(group: string, intent: GroupIntent): Promise<GroupSummary> {
    return this.groupManager.change(await this.groupManager.resolve(group), intent);
  }

  // ---- settings ------------------------------------------------------------------------------

  get settings(): ClientSettings {
    return this.settingsValue;
  }

  /** Changes and stores settings (settings.ts says what each does); emits 'settings'. */
  async updateSettings(change: Partial<ClientSettings>): Promise<ClientSettings> {
    const settings = { ...this.settingsValue, ...change };
    await saveSettings(this.deps.store, settings);
    this.settingsValue = settings;
    this.calls.setAlwaysRelay(this.deps.calls?.alwaysRelay === true || settings.relayOnlyCalls);
    this.emit({ type: 'settings', settings });
    return settings;
  }

  private newId(): string {
    return uuidFrom(this.deps.randomBytes(16));
  }

  // ---- account lifecycle -------------------------------------------------------------------

  private async becomeDevice(
    accountId: AccountId,
    deviceId: DeviceId,
    name?: string,
  ): Promise<Profile> {
    const profile: Profile = {
      relayUrl: this.deps.transport.relayUrl,
      accountId,
      deviceId,
      keysRotatedAt: this.now(),
      ...(name === undefined ? {} : { name }),
    };
    await this.deps.engine.setLocalAddress({ accountId, deviceId });
    await this.deps.store.saveProfile(profile);
    this.profileValue = profile;
    this.api.setDevice({ accountId, deviceId });
    await this.maintainKeys();
    return profile;
  }

  /** Creates an account with this device as its primary, and uploads its prekeys. */
  async register(options: { inviteCode?: string; name?: string } = {}): Promise<Profile> {
    if (this.profileValue)
      throw new ClientError('ALREADY_REGISTERED', 'this profile already has an account');
    const { identity, fields } = await newDeviceKeys(this.deps.engine, this.deps.signer);
    const created = await this.api.register({
      identityKey: toBase64(identity.identityKey),
      ...fields,
      ...(options.inviteCode === undefined ? {} : { inviteCode: options.inviteCode }),
    });
    return this.becomeDevice(created.accountId, created.deviceId, options.name);
  }

  /**
   * New device: shows `linkCode` (to type into the primary's `devices add`), then waits for the
   * primary's provisioning message, imports the account identity and joins the account
   * (linking.ts).
   */
  async startLink(): Promise<{ linkCode: string; done: Promise<Profile> }> {
    if (this.profileValue)
      throw new ClientError('ALREADY_REGISTERED', 'this profile already has an account');
    return startLink({
      engine: this.deps.engine,
      transport: this.deps.transport,
      signer: this.deps.signer,
      api: this.api,
      logger: this.logger,
      becomeDevice: (accountId, deviceId, name) => this.becomeDevice(accountId, deviceId, name),
      // The account's other devices answer with the contacts (best effort: the device is linked
      // whatever happens; `syncContacts` on another device sends them again).
      requestContacts: async (profile) => {
        const request: Content = { kind: 'contacts-request', id: this.newId(), sentAt: this.now() };
        await this.sender
          .send(profile.accountId, encodeContent(request))
          .catch((error: unknown) =>
            this.logger.log('warn', 'contacts request failed', reasonOf(error)),
          );
      },
    });
  }

  /** Primary: sends the account identity to the new device that shows `linkCode`. */
  addDevice(linkCode: string): Promise<void> {
    return addDevice(
      { engine: this.deps.engine, api: this.api },
      this.self(),
      this.profileValue?.name,
      linkCode,
    );
  }

  devices() {
    return this.api.devices();
  }

  async removeDevice(deviceId: DeviceId): Promise<void> {
    await this.api.removeDevice(deviceId);
    await this.deps.engine.deleteSession({ accountId: this.self().accountId, deviceId });
    this.emit({ type: 'device-removed', deviceId });
  }

  /** Deletes the account on the relay (primary only); local history stays until removed. */
  async deleteAccount(): Promise<void> {
    if (this.self().deviceId !== PRIMARY_DEVICE_ID)
      throw new ClientError('NOT_PRIMARY', 'only the primary device can delete the account');
    await this.api.deleteAccount();
  }

  /** Keeps one-time prekeys above the low-water mark and rotates the long-lived ones. */
  async maintainKeys(): Promise<void> {
    const profile = this.profileValue;
    if (!profile)
      throw new ClientError('NOT_REGISTERED', 'no account yet: run register or link first');
    this.profileValue = await maintainKeys(
      { api: this.api, engine: this.deps.engine, store: this.deps.store, now: this.now },
      profile,
    );
  }

  // ---- contacts, identities --------------------------------------------------------------

  /** Adds (or renames) a contact; also accepts a message request, and unblocks. */
  async addContact(name: string, accountId: string): Promise<Contact> {
    if (!isAccountId(accountId))
      throw new ClientError('UNKNOWN_ACCOUNT', `"${accountId}" is not an account id`);
    const existing = await this.deps.store.contact(accountId);
    const contact = { accountId, name, expireSeconds: existing?.expireSeconds ?? 0 };
    await this.deps.store.saveContact(contact);
    if (this.blocked.delete(accountId)) await saveBlocked(this.deps.store, this.blocked);
    return contact;
  }

  /** This account's contact link (contact-link.ts), with its name, to share as text or QR. */
  contactLink(): string {
    const profile = this.profileValue;
    if (!profile)
      throw new ClientError('NOT_REGISTERED', 'no account yet: run register or link first');
    return formatContactLink({
      relayUrl: profile.relayUrl,
      accountId: profile.accountId,
      ...(profile.name === undefined ? {} : { name: profile.name }),
    });
  }

  /**
   * Adds the contact a link names, under `name` or else the name in the link. Refuses a link
   * of another relay (OTHER_RELAY) and this account's own link (INVALID_CONTACT_LINK).
   */
  async addContactFromLink(link: string, name?: string): Promise<Contact> {
    const parsed = parseContactLink(link);
    const self = this.self();
    if (parsed.accountId === self.accountId)
      throw new ClientError('INVALID_CONTACT_LINK', 'that is your own contact link');
    const own = relayKey(this.deps.transport.relayUrl);
    if (parsed.relayUrl !== own)
      throw new ClientError(
        'OTHER_RELAY',
        `that contact is on the relay ${parsed.relayUrl}, and you are on ${own}: relays do not pass messages to each other, so you both need accounts on the same relay`,
      );
    const chosen = name?.trim() || parsed.name;
    if (!chosen)
      throw new ClientError(
        'INVALID_CONTACT_LINK',
        'that link carries no name: give the contact a name',
      );
    return this.addContact(chosen, parsed.accountId);
  }

  /**
   * Blocks an account: what it sends from now on is dropped unread (messages, calls, typing),
   * and its conversation is removed. `addContact` (or `unblock`) lifts it.
   */
  async block(accountId: AccountId): Promise<void> {
    this.blocked.add(accountId);
    await saveBlocked(this.deps.store, this.blocked);
    await this.deps.store.deleteConversation(accountId);
  }

  async unblock(accountId: AccountId): Promise<void> {
    if (this.blocked.delete(accountId)) await saveBlocked(this.deps.store, this.blocked);
  }

  /** Removes a conversation's messages on this device (a message request disappears with it). */
  deleteConversation(accountId: AccountId): Promise<void> {
    return this.deps.store.deleteConversation(accountId);
  }

  contacts(): Promise<Contact[]> {
    return this.deps.store.contacts();
  }

  /**
   * Sends every contact's name to this account's other devices (a newly linked device asks for
   * them by itself). Returns how many were sent: 0 when the account has no other device.
   */
  async syncContacts(): Promise<number> {
    const self = this.self();
    const contacts = (await this.deps.store.contacts()).map(({ accountId, name }) => ({
      accountId,
      name,
    }));
    let sent = 0;
    for (let start = 0; start < contacts.length; start += MAX_SYNCED_CONTACTS) {
      const chunk = contacts.slice(start, start + MAX_SYNCED_CONTACTS);
      const content: Content = {
        kind: 'contacts',
        id: this.newId(),
        sentAt: this.now(),
        contacts: chunk,
      };
      if (!(await this.sender.send(self.accountId, encodeContent(content)))) return 0;
      sent += chunk.length;
    }
    return sent;
  }

  /** A contact by name or account id; an unknown name is an error, an account id is accepted. */
  async resolve(nameOrId: string): Promise<AccountId> {
    const contacts = await this.deps.store.contacts();
    const byName = contacts.filter((c) => c.name === nameOrId);
    if (byName.length === 1) return (byName[0] as Contact).accountId;
    if (byName.length > 1)
      throw new ClientError(
        'UNKNOWN_CONTACT',
        `several contacts are named "${nameOrId}"; use the account id`,
      );
    if (isAccountId(nameOrId)) return nameOrId;
    throw new ClientError(
      'UNKNOWN_CONTACT',
      `no contact named "${nameOrId}"; add one with: contacts add NAME ACCOUNT_ID`,
    );
  }

  identity(accountId: AccountId): Promise<IdentityState | undefined> {
    return this.deps.engine.identityState(accountId);
  }

  /**
   * Where the safety number with an account stands, for a list (a group's members): "changed"
   * (a new key seen and not yet accepted, whether verified before or not), "verified", or
   * "not-verified" (also an account never talked to). `safetyNumber` shows the number itself.
   */
  async safetyState(accountId: AccountId): Promise<SafetyState> {
    const identity = await this.deps.engine.identityState(accountId);
    if (identity?.changed) return 'changed';
    return identity?.verified ? 'verified' : 'not-verified';
  }

  async safetyNumber(accountId: AccountId): Promise<SafetyNumber> {
    if (!(await this.deps.engine.identityState(accountId)))
      await this.sender.establish(accountId, '*');
    return this.deps.engine.safetyNumber(accountId);
  }

  /**
   * Compares what was scanned from the contact's phone (their safety number's QR code,
   * `safetyNumberCode`) with this side's, and marks the contact verified if they are equal;
   * throws SAFETY_NUMBER_MISMATCH (nothing marked) if not.
   */
  async verifyScanned(accountId: AccountId, scanned: string): Promise<void> {
    const number = await this.safetyNumber(accountId);
    if (scanned.trim() !== safetyNumberCode(number.digits))
      throw new ClientError(
        'SAFETY_NUMBER_MISMATCH',
        'the scanned code is not the safety number of this conversation: someone may be between you, or it is another conversation’s code',
      );
    await this.deps.engine.setVerified(accountId, true);
  }

  async verify(accountId: AccountId): Promise<void> {
    await this.safetyNumber(accountId);
    await this.deps.engine.setVerified(accountId, true);
  }

  acceptIdentity(accountId: AccountId): Promise<void> {
    return this.deps.engine.acceptIdentity(accountId);
  }

  // ---- sending ---------------------------------------------------------------------------

  /**
   * Sends to the account's devices, then stores the copy (sync) for this account's other
   * devices, which goes out later, on its own (sync-copies.ts). Stored only once the recipient's
   * send was accepted; a text leaves the outbox only after that, so no copy is lost.
   */
  private async sendContent(
    to: AccountId,
    content: Content,
    options: SendOptions = {},
  ): Promise<void> {
    await this.sender.send(to, encodeContent(content), options);
    if (content.kind === 'typing' || content.kind === 'receipt') return;
    // A group's contents have their own copies to this account's devices (groups/).
    if (content.kind === 'group-change' || content.kind === 'group') return;
    if (to === this.self().accountId) return;
    await this.syncCopies.queue(to, content);
  }

  private async expiryFor(conversation: string, from: number): Promise<number | undefined> {
    const seconds = (await this.deps.store.contact(conversation))?.expireSeconds ?? 0;
    return seconds > 0 ? from + seconds * 1000 : undefined;
  }

  /**
   * Sends a text. It is stored first (status "sending") and kept in the outbox until the relay
   * accepts it; a failed send stays there for `flushOutbox` and is never sent twice once
   * accepted. A text longer than MAX_TEXT_BYTES is refused before anything is stored.
   */
  async sendText(to: AccountId, text: string): Promise<StoredMessage> {
    if (textBytes(text) > MAX_TEXT_BYTES)
      throw new ClientError(
        'TEXT_TOO_LONG',
        `the text is too long: a text may be at most ${MAX_TEXT_BYTES} bytes (UTF-8; a line break counts 2), this one has ${textBytes(text)}`,
      );
    const now = this.now();
    const expireSeconds = (await this.deps.store.contact(to))?.expireSeconds ?? 0;
    const content: Content = {
      kind: 'text',
      id: this.newId(),
      sentAt: now,
      text,
      ...(expireSeconds > 0 ? { expireSeconds } : {}),
    };
    const expiresAt = await this.expiryFor(to, now);
    const message: StoredMessage = {
      id: content.id,
      conversation: to,
      direction: 'out',
      text,
      sentAt: now,
      receivedAt: now,
      status: 'sending',
      ...(expiresAt === undefined ? {} : { expiresAt }),
    };
    await this.deps.store.addMessage(message);
    await this.deliver(to, content, now);
    return { ...message, status: 'sent' };
  }

  /**
   * Through the outbox to the relay: kept there (status "sending") after a failure that may pass
   * (unreachable, rate-limited, full queue), marked "failed" after one that will not.
   */
  private async deliver(to: AccountId, content: Content, now: number): Promise<void> {
    const entry = {
      id: content.id,
      recipient: to,
      content: encodeContent(content),
      online: false,
      urgent: false,
      createdAt: now,
    };
    await sendThroughOutbox(this.deps.store, entry, to, () => this.sendContent(to, content));
    await this.deps.store.updateMessage(to, content.id, { status: 'sent' });
  }

  /**
   * Sends a message that is not sent yet again, under its own id (so the recipient never shows
   * it twice): a "failed" one (refused, or a safety number that changed and was then accepted)
   * goes through the outbox again; a "sending" one is in the outbox already, and the outbox is
   * flushed. In a group (`conversation` is the group id) a message that reached some members
   * goes only to those it left out. Throws NOT_RETRYABLE for a message that was sent, or not by
   * this device.
   */
  async retryMessage(conversation: string, messageId: string): Promise<StoredMessage> {
    const message = await this.deps.store.message(conversation, messageId);
    if (
      !message ||
      message.direction !== 'out' ||
      message.deleted ||
      (message.status !== 'failed' && message.status !== 'sending')
    )
      throw new ClientError('NOT_RETRYABLE', 'that message is not waiting to be sent');
    if (message.status === 'sending') {
      await this.flushOutbox();
    } else if (isGroupId(conversation)) {
      await this.groupTexts.retry(conversation, message);
    } else if (isAccountId(conversation)) {
      await this.deps.store.updateMessage(conversation, messageId, { status: 'sending' });
      const expireSeconds = (await this.deps.store.contact(conversation))?.expireSeconds ?? 0;
      const content: Content = {
        kind: 'text',
        id: message.id,
        sentAt: message.sentAt,
        text: message.text,
        ...(expireSeconds > 0 ? { expireSeconds } : {}),
      };
      await this.deliver(conversation, content, this.now());
    }
    return (await this.deps.store.message(conversation, messageId)) ?? message;
  }

  /**
   * Retries sends left by a network failure, a rate limit or a full queue; returns how many went
   * out. Another network failure stops it (the rest stays for the next time); a send refused for
   * now stays and the others go on; a send the relay refuses for good is marked failed, as
   * `sendText` does, so one bad entry never holds back the others.
   */
  async flushOutbox(): Promise<number> {
    let sent = 0;
    for (const entry of await this.deps.store.outbox()) {
      // Copies go out at their own time (sync-copies.ts), never right next to a send.
      if (this.syncCopies.isCopy(entry)) continue;
      const conversation = entry.group ?? entry.recipient;
      try {
        const content = decodeContent(entry.content);
        if (entry.group !== undefined) {
          if (content.kind !== 'group') throw new ClientError('SEND_FAILED', 'not a group message');
          // Its status follows whom it reached (the members' receipts, later).
          await this.groupTexts.sendAndRecord(entry.group, content.content);
        } else {
          await this.sendContent(entry.recipient, content);
        }
      } catch (error) {
        if (error instanceof ClientError && error.code === 'RELAY_UNREACHABLE') throw error;
        if (error instanceof ClientError && isRetryable(error)) {
          // Rate-limited, or the recipient's queue is full: kept for next time; the others go on.
          this.logger.log('info', 'queued message kept', reasonOf(error));
          continue;
        }
        this.logger.log('warn', 'queued message failed', reasonOf(error));
        await this.deps.store.removeOutbox(entry.id);
        await this.deps.store.updateMessage(conversation, entry.id, { status: 'failed' });
        continue;
      }
      await this.deps.store.removeOutbox(entry.id);
      if (entry.group === undefined)
        await this.deps.store.updateMessage(conversation, entry.id, { status: 'sent' });
      sent += 1;
    }
    return sent;
  }

  /**
   * Call signaling through the send pipeline: ICE candidates online-only (never stored), the
   * rest urgent and stored; with `sync`, a copy goes to this account's other devices.
   */
  private async sendCallSignal(
    to: AccountId,
    callId: string,
    signal: CallSignal,
    options: { online: boolean; sync: boolean },
  ): Promise<void> {
    const content: Content = {
      kind: 'call',
      id: this.newId(),
      sentAt: this.now(),
      callId,
      signal,
    };
    await this.sender.send(
      to,
      encodeContent(content),
      options.online ? { online: true } : { urgent: true },
    );
    if (!options.sync) return;
    // Best effort, as for messages: the peer already has the signal.
    const sync: Content = { kind: 'sync', id: this.newId(), sentAt: content.sentAt, to, content };
    await this.sender
      .send(this.self().accountId, encodeContent(sync), { urgent: true })
      .catch((error: unknown) => this.logger.log('warn', 'call copy failed', reasonOf(error)));
  }

  /** Typing indicators are online-only: the relay never stores them. None with the setting off. */
  async sendTyping(to: AccountId, typing: boolean): Promise<void> {
    if (!this.settingsValue.typingIndicators) return;
    await this.sender.send(
      to,
      encodeContent({ kind: 'typing', id: this.newId(), sentAt: this.now(), typing }),
      { online: true },
    );
  }

  /**
   * Marks a conversation's received messages read and tells the sender (not with read receipts
   * turned off in the settings, nor to someone who is not a contact).
   */
  async markRead(conversation: AccountId): Promise<number> {
    const unread = (await this.deps.store.messages(conversation)).filter(
      (m) => m.direction === 'in' && m.status !== 'read',
    );
    if (unread.length === 0) return 0;
    // Receipt first: if it cannot be sent, the messages stay unread and it is sent next time.
    // None to a message request: a stranger does not learn that it was read.
    if (this.settingsValue.readReceipts && (await this.deps.store.contact(conversation)))
      await this.sendContent(
        conversation,
        this.receipt(
          'read',
          unread.map((m) => m.id),
        ),
      );
    for (const message of unread) {
      await this.deps.store.updateMessage(conversation, message.id, { status: 'read' });
    }
    return unread.length;
  }

  async deleteForEveryone(conversation: AccountId, messageId: string): Promise<void> {
    const message = await this.deps.store.message(conversation, messageId);
    if (!message || message.direction !== 'out') {
      throw new ClientError(
        'UNKNOWN_CONTACT',
        `no message ${messageId} sent by you in that conversation`,
      );
    }
    await this.sendContent(conversation, {
      kind: 'delete',
      id: this.newId(),
      sentAt: this.now(),
      target: messageId,
    });
    await this.deps.store.updateMessage(conversation, messageId, { deleted: true, text: '' });
  }

  /** Sets the disappearing-message timer for both sides of a conversation (0 turns it off). */
  async setDisappearing(conversation: AccountId, expireSeconds: number): Promise<void> {
    await this.sendContent(conversation, {
      kind: 'timer',
      id: this.newId(),
      sentAt: this.now(),
      expireSeconds,
    });
    await saveTimer(this.deps.store, conversation, expireSeconds);
  }

  /**
   * Removes messages whose disappearing timer ran out, and the copies of them still waiting to
   * go to this account's other devices (interfaces call it periodically).
   */
  async purgeExpired(): Promise<StoredMessage[]> {
    const removed = await this.deps.store.removeExpired(this.now());
    await this.syncCopies.dropCopiesOf(removed);
    return removed;
  }

  /** The conversation, oldest first, after removing messages whose timer ran out. */
  async history(conversation: string): Promise<StoredMessage[]> {
    await this.purgeExpired();
    return this.deps.store.messages(conversation);
  }

  // ---- receiving -------------------------------------------------------------------------

  /**
   * Connects the message socket once; envelopes are processed (receiver.ts) until `disconnect`
   * or until the socket closes ('disconnected' event). `start` keeps it connected instead.
   */
  async connect(): Promise<void> {
    await this.openConnection();
    await this.resume();
  }

  private async openConnection(onLost?: (code: number, reason: string) => void): Promise<void> {
    if (this.connection) return;
    this.self();
    const handlers: ConnectionHandlers = {
      onEnvelope: (envelope) => this.receiver.receive(envelope),
      onQueueEmpty: () => this.emit({ type: 'queue-empty' }),
      onIdle: () => {
        if (this.sendReceiptsWhenIdle) void this.sendOwedReceipts();
      },
      onClose: (code, reason) => {
        this.connection = undefined;
        this.api.useSocket(undefined);
        this.syncCopies.stop();
        this.emit({ type: 'disconnected', code, reason });
        onLost?.(code, reason);
      },
    };
    const open = async () =>
      RelayConnection.open(this.deps.transport, await this.api.socketAuth(), handlers, this.logger);
    const connection = await open().catch(async (error: unknown) => {
      // A relay without the login on the socket: over HTTP from now on (relay-api.ts).
      if (!(error instanceof ClientError && error.relayCode === NO_SOCKET_LOGIN)) throw error;
      this.api.noSocketLogin();
      return open();
    });
    // A socket that closed between its authentication and here was already let go (onClose).
    if (connection.isClosed) return;
    this.connection = connection;
    // Sends go over the socket while it is open (relay-api.ts).
    this.api.useSocket((request) => connection.call('message.send', request));
  }

  /** After (re)connecting: key upkeep, then what waited in the outbox, then copies due. */
  private async resume(): Promise<void> {
    await this.maintainKeys();
    // A message the relay still refuses for now (rate limit, full queue) stays in the outbox for
    // next time; it must not keep the device from receiving.
    const keptForLater = (error: unknown): void => {
      if (!(error instanceof ClientError && isRetryable(error))) throw error;
    };
    await this.flushOutbox().catch(keptForLater);
    // From now until the socket closes, each copy goes out at its time.
    await this.syncCopies.start().catch(keptForLater);
  }

  /** Waits until envelopes received so far are handled, sends owed receipts, closes. */
  async disconnect(): Promise<void> {
    this.syncCopies.stop();
    const connection = this.connection;
    if (connection) {
      await connection.drain();
      connection.close();
    }
    await this.sendOwedReceipts();
  }

  /**
   * Keeps the message socket connected until `stop` (reconnector.ts): reconnects with backoff
   * and jitter after every loss, flushes the outbox after every connection, and sends delivery
   * receipts as soon as the envelopes that caused them are handled. The state shows in
   * 'connection' events and in `snapshot().connection`. Resolves once stopped; rejects with a
   * ClientError, and stops retrying, when the relay refuses this device for good (RELAY_REFUSED:
   * removed or deleted; CONNECTED_ELSEWHERE).
   */
  async start(): Promise<void> {
    this.self();
    if (this.reconnector)
      throw new ClientError('ALREADY_STARTED', 'the connection is already kept');
    const reconnector = new Reconnector({
      connect: (onLost) => this.openConnection(onLost),
      resume: async () => {
        await this.resume();
        await this.sendOwedReceipts();
      },
      disconnect: () => this.disconnect(),
      sleep: this.sleep,
      random: this.deps.random ?? Math.random,
      onStatus: (status) => {
        this.connectionStatus = status;
        this.emit({ type: 'connection', status });
      },
      logger: this.logger,
    });
    this.reconnector = reconnector;
    this.sendReceiptsWhenIdle = true;
    const running = reconnector.run().finally(() => {
      this.sendReceiptsWhenIdle = false;
      if (this.reconnector === reconnector) this.reconnector = undefined;
    });
    return running;
  }

  /** While `start` waits before its next attempt: tries now (an interface's "retry now"). */
  reconnectNow(): void {
    this.reconnector?.retryNow();
  }

  /** Ends `start`: handles what was received, sends owed receipts, disconnects. */
  async stop(): Promise<void> {
    await this.reconnector?.stop();
  }

  /**
   * Sends the delivery receipts owed for envelopes already acknowledged, and the contacts a
   * newly linked device asked for. What cannot be sent for lack of a network stays owed.
   */
  async sendOwedReceipts(): Promise<void> {
    if (this.receiver.takeContactsOwed()) {
      await this.syncContacts().catch((error: unknown) =>
        this.logger.log('warn', 'contacts sync failed', reasonOf(error)),
      );
    }
    for (const { to, groupId, messageIds } of this.receiver.takeOwedReceipts()) {
      await this.sendContent(to, this.receipt('delivered', messageIds, groupId)).catch(
        (error: unknown) => {
          this.logger.log('warn', 'delivery receipt failed', reasonOf(error));
          if (error instanceof ClientError && error.code === 'RELAY_UNREACHABLE')
            this.receiver.owe(to, messageIds, groupId);
        },
      );
    }
  }

  async close(): Promise<void> {
    await this.shutDown();
    await this.deps.engine.close();
  }

  /**
   * Closes the client and erases what this device keeps: the engine's keys and sessions, then
   * the store (profile, contacts, messages, outbox). For after `deleteAccount` or removing this
   * device; it asks the relay nothing. The engine goes first: interrupted in between, the store
   * still has a profile whose engine has no identity, which the app takes as a wipe to finish
   * (a store without a profile beside an engine with an identity could not register again).
   */
  async wipe(): Promise<void> {
    await this.shutDown();
    await this.deps.engine.wipe();
    await this.deps.store.wipe();
    this.profileValue = undefined;
  }

  /** Stops everything that runs: copies, the reconnector, calls, the socket. */
  private async shutDown(): Promise<void> {
    this.syncCopies.stop();
    await this.reconnector?.stop();
    await this.calls.close();
    this.connection?.close();
    this.connection = undefined;
  }
}
