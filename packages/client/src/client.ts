import type { Envelope } from '@privcomm/wire';
import {
  equalBytes,
  fromBase64,
  fromBase64Url,
  toBase64,
  toBase64Url,
  utf8Decode,
  utf8Encode,
} from './bytes.ts';
import { CallManager, type CallOptions, type CallSummary } from './calls/call-manager.ts';
import type { CallState } from './calls/call-state.ts';
import { RelayConnection } from './connection.ts';
import {
  decodeContent,
  encodeContent,
  MAX_SYNCED_CONTACTS,
  type CallSignal,
  type Content,
  type SyncedContact,
} from './content.ts';
import {
  EngineError,
  UntrustedIdentityError,
  type Address,
  type IdentityState,
  type SafetyNumber,
  type SignalEngine,
} from './engine.ts';
import { ClientError, isRetryable } from './errors.ts';
import { RelayApi, wirePreKey, wireSignedKey, type AuthSigner } from './relay-api.ts';
import { Sender, type SendOptions } from './sender.ts';
import {
  laterStatus,
  type ClientStore,
  type Contact,
  type Profile,
  type StoredMessage,
} from './store.ts';
import type { Transport } from './transport.ts';

/**
 * Refill one-time keys below this many, with this many. Half the batch, so that keys taken
 * between two upkeeps (the relay hands out a bounded number per hour) rarely empty the store.
 */
const PREKEY_LOW_WATER = 50;
const PREKEY_BATCH = 100;
/** Signed and last-resort prekeys are replaced this often. */
const KEY_ROTATION_MS = 2 * 24 * 60 * 60 * 1000;
/** Envelope ids are remembered this long: the relay keeps an envelope at most 30 days. */
const PROCESSED_MEMORY_MS = 31 * 24 * 60 * 60 * 1000;
/**
 * Link codes start with a fixed word: the base64url address after it may begin with "-", which a
 * command line would take for an option if it came first.
 */
const LINK_CODE_PREFIX = 'privcomm-link:';
/** A new device waits this long for the primary to send the provisioning message. */
const LINK_TIMEOUT_MS = 10 * 60 * 1000;

export type ClientEvent =
  | { type: 'message'; message: StoredMessage }
  | { type: 'receipt'; conversation: string; receipt: 'delivered' | 'read'; messageIds: string[] }
  | { type: 'typing'; from: string; deviceId: number; typing: boolean }
  | { type: 'deleted'; conversation: string; messageId: string }
  | { type: 'timer'; conversation: string; expireSeconds: number }
  | { type: 'identity-changed'; accountId: string }
  /** Contacts another device of this account sent (linking, or `syncContacts` there). */
  | { type: 'contacts-synced'; fromDevice: number; contacts: Contact[] }
  /** A newly linked device asked for the contacts: `sendOwedReceipts` sends them. */
  | { type: 'contacts-requested'; fromDevice: number }
  | { type: 'decryption-failed'; envelopeId: string; reason: string }
  | { type: 'queue-empty' }
  | { type: 'disconnected'; code: number; reason: string }
  /** The current call changed state (calls/). */
  | { type: 'call'; state: CallState }
  /** A call ended (also one answered busy or missed here). */
  | { type: 'call-ended'; summary: CallSummary };

export interface ClientDeps {
  readonly transport: Transport;
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  readonly signer: AuthSigner;
  /** Random bytes from a CSPRNG (message ids). */
  readonly randomBytes: (length: number) => Uint8Array;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** WebRTC, default audio and call settings (calls/). */
  readonly calls?: CallOptions;
}

export interface ConversationSummary {
  readonly accountId: string;
  readonly name?: string;
  readonly lastMessage?: StoredMessage;
}

/** What an interface renders: everything the core knows, as plain data. */
export interface ClientSnapshot {
  readonly profile: Profile | undefined;
  readonly contacts: Contact[];
  /** One entry per contact, with its latest message (and its delivery state), newest first. */
  readonly conversations: ConversationSummary[];
}

const uuidFrom = (bytes: Uint8Array): string => {
  const b = Uint8Array.from(bytes.subarray(0, 16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The client core: one device of one account. Interfaces (the CLI, the Android app) drive it
 * through these methods and render what `subscribe` and `snapshot` give them; they never reach
 * into the engine, the store or the transport themselves.
 */
export class PrivcommClient {
  private readonly api: RelayApi;
  private readonly sender: Sender;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly listeners = new Set<(event: ClientEvent) => void>();
  private profileValue: Profile | undefined;
  private connection: RelayConnection | undefined;
  /** Delivery receipts owed, sent after the envelopes that caused them are acknowledged. */
  private readonly owedReceipts = new Map<string, string[]>();
  /** A newly linked device of this account asked for the contacts; sent with the receipts. */
  private contactsOwed = false;
  /** Voice calls: place, answer, decline, hang up; state and summaries as events. */
  readonly calls: CallManager;

  private constructor(
    private readonly deps: ClientDeps,
    profile: Profile | undefined,
  ) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.profileValue = profile;
    this.api = new RelayApi(
      deps.transport,
      deps.signer,
      this.now,
      profile && { accountId: profile.accountId, deviceId: profile.deviceId },
    );
    this.sender = new Sender({ api: this.api, engine: deps.engine, sleep: this.sleep }, () =>
      this.self(),
    );
    this.calls = new CallManager(
      {
        send: (to, callId, signal, options) => this.sendCallSignal(to, callId, signal, options),
        turnCredentials: () => this.api.turnCredentials(),
        identityState: (accountId) => deps.engine.identityState(accountId),
        self: () => this.self(),
        randomBytes: deps.randomBytes,
        now: this.now,
      },
      deps.calls,
    );
    this.calls.subscribe((event) => this.emit(event));
  }

  static async open(deps: ClientDeps): Promise<PrivcommClient> {
    return new PrivcommClient(deps, await deps.store.profile());
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
    for (const listener of this.listeners) listener(event);
  }

  async snapshot(): Promise<ClientSnapshot> {
    await this.purgeExpired();
    const contacts = await this.deps.store.contacts();
    const conversations = await Promise.all(
      contacts.map(async (contact) => {
        const lastMessage = (await this.deps.store.messages(contact.accountId)).at(-1);
        return {
          accountId: contact.accountId,
          name: contact.name,
          ...(lastMessage === undefined ? {} : { lastMessage }),
        };
      }),
    );
    conversations.sort(
      (a, b) => (b.lastMessage?.receivedAt ?? 0) - (a.lastMessage?.receivedAt ?? 0),
    );
    return { profile: this.profileValue, contacts, conversations };
  }

  private newId(): string {
    return uuidFrom(this.deps.randomBytes(16));
  }

  // ---- account lifecycle -------------------------------------------------------------------

  private async newDeviceKeys() {
    const identity =
      (await this.deps.engine.localIdentity()) ?? (await this.deps.engine.createIdentity());
    return {
      identity,
      fields: {
        registrationId: identity.registrationId,
        authKey: toBase64(await this.deps.signer.publicKey()),
        signedPreKey: wireSignedKey(await this.deps.engine.generateSignedPreKey()),
        kyberLastResortPreKey: wireSignedKey(
          await this.deps.engine.generateKyberLastResortPreKey(),
        ),
      },
    };
  }

  private async becomeDevice(accountId: string, deviceId: number, name?: string): Promise<Profile> {
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
    const { identity, fields } = await this.newDeviceKeys();
    const created = await this.api.register({
      identityKey: toBase64(identity.identityKey),
      ...fields,
      ...(options.inviteCode === undefined ? {} : { inviteCode: options.inviteCode }),
    });
    return this.becomeDevice(created.accountId, created.deviceId, options.name);
  }

  /**
   * New device: shows `linkCode` (to type into the primary's `devices add`), then waits for the
   * primary's provisioning message, imports the account identity and joins the account.
   */
  async startLink(): Promise<{ linkCode: string; done: Promise<Profile> }> {
    if (this.profileValue)
      throw new ClientError('ALREADY_REGISTERED', 'this profile already has an account');
    const provisioningKey = await this.deps.engine.createProvisioningKey();
    const url = `${this.deps.transport.relayUrl.replace(/^http/, 'ws')}/v1/provisioning`;
    const socket = this.deps.transport.openSocket(url);
    const respond = (id: number, status: number): void =>
      socket.send(JSON.stringify({ type: 'response', id, status }));

    // Everything the socket says arrives as one of these outcomes, in order.
    let address!: (value: string) => void;
    let provisioned!: (profile: Profile) => void;
    let fail!: (error: Error) => void;
    const addressKnown = new Promise<string>((resolve, reject) => {
      address = resolve;
      fail = reject;
    });
    const done = new Promise<Profile>((resolve, reject) => {
      provisioned = resolve;
      const failAddress = fail;
      fail = (error) => {
        failAddress(error);
        reject(error);
      };
    });
    let linking = false;
    /**
     * The answer comes only after the message decrypts: a message that does not (damaged, or
     * for another key) is refused with 400 and the socket keeps waiting for a good one.
     */
    const onProvisioningMessage = async (id: number, content: string): Promise<void> => {
      if (linking) return respond(id, 409);
      let payload: { accountId: string; linkToken: string; name?: string };
      try {
        payload = JSON.parse(
          utf8Decode(await this.deps.engine.openProvisioning(fromBase64(content))),
        ) as typeof payload;
      } catch {
        return respond(id, 400);
      }
      linking = true;
      // The relay closes the socket on this answer; from here on only the link request matters.
      socket.onclose = null;
      respond(id, 200);
      const { fields } = await this.newDeviceKeys();
      const created = await this.api.link({ linkToken: payload.linkToken, ...fields });
      const profile = await this.becomeDevice(created.accountId, created.deviceId, payload.name);
      // The account's other devices answer with the contacts (best effort: the device is linked
      // whatever happens; `syncContacts` on another device sends them again).
      const request: Content = { kind: 'contacts-request', id: this.newId(), sentAt: this.now() };
      await this.sender.send(profile.accountId, encodeContent(request)).catch(() => undefined);
      provisioned(profile);
    };
    socket.onmessage = (event) => {
      let frame: { type?: string; id?: number; verb?: string; body?: Record<string, unknown> };
      try {
        frame = JSON.parse(String(event.data)) as typeof frame;
      } catch {
        return;
      }
      if (frame.type !== 'request' || typeof frame.id !== 'number') return;
      const { id, verb, body } = frame as {
        id: number;
        verb?: string;
        body?: Record<string, unknown>;
      };
      if (verb === 'provisioning.address' && typeof body?.address === 'string') {
        respond(id, 200);
        address(body.address);
      } else if (verb === 'provisioning.message' && typeof body?.content === 'string') {
        onProvisioningMessage(id, body.content).catch(fail);
      } else {
        respond(id, 404);
      }
    };
    socket.onerror = () => fail(new ClientError('RELAY_UNREACHABLE', `cannot connect to ${url}`));
    socket.onclose = (event) =>
      fail(
        new ClientError(
          event.code === 4408 ? 'LINK_TIMEOUT' : 'RELAY_UNREACHABLE',
          `the link was not completed (socket closed: ${event.code})`,
        ),
      );
    const timeout = setTimeout(
      () => fail(new ClientError('LINK_TIMEOUT', 'no link within 10 minutes')),
      LINK_TIMEOUT_MS,
    );
    const finished = done.finally(() => {
      clearTimeout(timeout);
      socket.onclose = null;
      socket.close(1000, 'linked');
    });
    // Handled here too, so a failure before the caller awaits `done` is not an unhandled rejection.
    finished.catch(() => undefined);
    return {
      linkCode: `${LINK_CODE_PREFIX}${await addressKnown}.${toBase64Url(provisioningKey)}`,
      done: finished,
    };
  }

  /** Primary: sends the account identity to the new device that shows `linkCode`. */
  async addDevice(linkCode: string): Promise<void> {
    const self = this.self();
    if (self.deviceId !== 1)
      throw new ClientError('NOT_PRIMARY', 'only the primary device can add devices');
    const match = /^privcomm-link:([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{40,60})$/.exec(
      linkCode.trim(),
    );
    if (!match)
      throw new ClientError(
        'INVALID_LINK_CODE',
        'that is not a link code; copy it again from the new device',
      );
    let key: Uint8Array;
    try {
      key = fromBase64Url(match[2] as string);
    } catch {
      throw new ClientError('INVALID_LINK_CODE', 'that link code is damaged; copy it again');
    }
    const { linkToken } = await this.api.linkToken();
    const payload = utf8Encode(
      JSON.stringify({ accountId: self.accountId, linkToken, name: this.profileValue?.name }),
    );
    let sealed: Uint8Array;
    try {
      sealed = await this.deps.engine.sealProvisioning(key, payload);
    } catch {
      throw new ClientError(
        'INVALID_LINK_CODE',
        'that link code holds no valid key; copy it again',
      );
    }
    await this.api.provision(match[1] as string, sealed);
  }

  devices() {
    return this.api.devices();
  }

  async removeDevice(deviceId: number): Promise<void> {
    await this.api.removeDevice(deviceId);
    await this.deps.engine.deleteSession({ accountId: this.self().accountId, deviceId });
  }

  /** Deletes the account on the relay (primary only); local history stays until removed. */
  async deleteAccount(): Promise<void> {
    if (this.self().deviceId !== 1)
      throw new ClientError('NOT_PRIMARY', 'only the primary device can delete the account');
    await this.api.deleteAccount();
  }

  /** Keeps one-time prekeys above the low-water mark and rotates the long-lived ones. */
  async maintainKeys(): Promise<void> {
    const counts = await this.api.keyCounts();
    const upload: Record<string, unknown> = {};
    if (counts.preKeys < PREKEY_LOW_WATER) {
      upload.preKeys = (await this.deps.engine.generatePreKeys(PREKEY_BATCH)).map(wirePreKey);
    }
    if (counts.kyberPreKeys < PREKEY_LOW_WATER) {
      upload.kyberPreKeys = (await this.deps.engine.generateKyberPreKeys(PREKEY_BATCH)).map(
        wireSignedKey,
      );
    }
    const profile = this.profileValue;
    const rotate = profile !== undefined && this.now() - profile.keysRotatedAt >= KEY_ROTATION_MS;
    if (rotate) {
      upload.signedPreKey = wireSignedKey(await this.deps.engine.generateSignedPreKey());
      upload.kyberLastResortPreKey = wireSignedKey(
        await this.deps.engine.generateKyberLastResortPreKey(),
      );
    }
    if (Object.keys(upload).length > 0) await this.api.uploadKeys(upload);
    if (rotate && profile) {
      this.profileValue = { ...profile, keysRotatedAt: this.now() };
      await this.deps.store.saveProfile(this.profileValue);
    }
  }

  // ---- contacts, identities --------------------------------------------------------------

  async addContact(name: string, accountId: string): Promise<Contact> {
    if (!UUID.test(accountId))
      throw new ClientError('UNKNOWN_ACCOUNT', `"${accountId}" is not an account id`);
    const existing = await this.deps.store.contact(accountId);
    const contact = { accountId, name, expireSeconds: existing?.expireSeconds ?? 0 };
    await this.deps.store.saveContact(contact);
    return contact;
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

  /** Names from another device of this account; a name taken here by another account is kept. */
  private async applyContacts(fromDevice: number, synced: readonly SyncedContact[]) {
    const saved: Contact[] = [];
    const local = new Map((await this.deps.store.contacts()).map((c) => [c.accountId, c]));
    for (const { accountId, name } of synced) {
      if (accountId === this.self().accountId) continue;
      if ([...local.values()].some((c) => c.name === name && c.accountId !== accountId)) continue;
      const existing = local.get(accountId);
      if (existing?.name === name) continue;
      const contact = { accountId, name, expireSeconds: existing?.expireSeconds ?? 0 };
      await this.deps.store.saveContact(contact);
      local.set(accountId, contact);
      saved.push(contact);
    }
    if (saved.length > 0) this.emit({ type: 'contacts-synced', fromDevice, contacts: saved });
  }

  /** A contact by name or account id; an unknown name is an error, an account id is accepted. */
  async resolve(nameOrId: string): Promise<string> {
    const contacts = await this.deps.store.contacts();
    const byName = contacts.filter((c) => c.name === nameOrId);
    if (byName.length === 1) return (byName[0] as Contact).accountId;
    if (byName.length > 1)
      throw new ClientError(
        'UNKNOWN_CONTACT',
        `several contacts are named "${nameOrId}"; use the account id`,
      );
    if (UUID.test(nameOrId)) return nameOrId;
    throw new ClientError(
      'UNKNOWN_CONTACT',
      `no contact named "${nameOrId}"; add one with: contacts add NAME ACCOUNT_ID`,
    );
  }

  identity(accountId: string): Promise<IdentityState | undefined> {
    return this.deps.engine.identityState(accountId);
  }

  async safetyNumber(accountId: string): Promise<SafetyNumber> {
    if (!(await this.deps.engine.identityState(accountId)))
      await this.sender.establish(accountId, '*');
    return this.deps.engine.safetyNumber(accountId);
  }

  async verify(accountId: string): Promise<void> {
    await this.safetyNumber(accountId);
    await this.deps.engine.setVerified(accountId, true);
  }

  acceptIdentity(accountId: string): Promise<void> {
    return this.deps.engine.acceptIdentity(accountId);
  }

  // ---- sending ---------------------------------------------------------------------------

  /** Sends to the account's devices and a copy (sync) to this account's other devices. */
  private async sendContent(
    to: string,
    content: Content,
    options: SendOptions = {},
  ): Promise<void> {
    await this.sender.send(to, encodeContent(content), options);
    if (content.kind === 'typing' || content.kind === 'receipt') return;
    const self = this.self();
    if (to === self.accountId) return;
    const sync: Content = { kind: 'sync', id: this.newId(), sentAt: content.sentAt, to, content };
    // Best effort: the recipient already has the message, so a failed copy to this account's
    // other devices must not turn the send into a failure (or a resend).
    await this.sender.send(self.accountId, encodeContent(sync)).catch(() => undefined);
  }

  private async expiryFor(conversation: string, from: number): Promise<number | undefined> {
    const seconds = (await this.deps.store.contact(conversation))?.expireSeconds ?? 0;
    return seconds > 0 ? from + seconds * 1000 : undefined;
  }

  /**
   * Sends a text. It is stored first (status "sending") and kept in the outbox until the relay
   * accepts it; a failed send stays there for `flushOutbox` and is never sent twice once
   * accepted.
   */
  async sendText(to: string, text: string): Promise<StoredMessage> {
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
    await this.deps.store.addOutbox({
      id: content.id,
      recipient: to,
      content: encodeContent(content),
      online: false,
      urgent: false,
      createdAt: now,
    });
    try {
      await this.sendContent(to, content);
    } catch (error) {
      // Unreachable, rate-limited or a full recipient queue: the message stays in the outbox
      // (status "sending") for flushOutbox to retry later.
      if (error instanceof ClientError && isRetryable(error)) throw error;
      await this.deps.store.removeOutbox(content.id);
      await this.deps.store.updateMessage(to, content.id, { status: 'failed' });
      throw error;
    }
    await this.deps.store.removeOutbox(content.id);
    await this.deps.store.updateMessage(to, content.id, { status: 'sent' });
    return { ...message, status: 'sent' };
  }

  /** Retries sends left by a network failure; returns how many went out. */
  async flushOutbox(): Promise<number> {
    let sent = 0;
    for (const entry of await this.deps.store.outbox()) {
      const content = decodeContent(entry.content);
      await this.sendContent(entry.recipient, content);
      await this.deps.store.removeOutbox(entry.id);
      await this.deps.store.updateMessage(entry.recipient, entry.id, { status: 'sent' });
      sent += 1;
    }
    return sent;
  }

  /**
   * Call signaling through the send pipeline: ICE candidates online-only (never stored), the
   * rest urgent and stored; with `sync`, a copy goes to this account's other devices.
   */
  private async sendCallSignal(
    to: string,
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
      .catch(() => undefined);
  }

  /** Typing indicators are online-only: the relay never stores them. */
  async sendTyping(to: string, typing: boolean): Promise<void> {
    await this.sender.send(
      to,
      encodeContent({ kind: 'typing', id: this.newId(), sentAt: this.now(), typing }),
      { online: true },
    );
  }

  /** Marks a conversation's received messages read and tells the sender. */
  async markRead(conversation: string): Promise<number> {
    const unread = (await this.deps.store.messages(conversation)).filter(
      (m) => m.direction === 'in' && m.status !== 'read',
    );
    if (unread.length === 0) return 0;
    // Receipt first: if it cannot be sent, the messages stay unread and it is sent next time.
    await this.sendContent(conversation, {
      kind: 'receipt',
      id: this.newId(),
      sentAt: this.now(),
      receipt: 'read',
      messageIds: unread.map((m) => m.id),
    });
    for (const message of unread) {
      await this.deps.store.updateMessage(conversation, message.id, { status: 'read' });
    }
    return unread.length;
  }

  async deleteForEveryone(conversation: string, messageId: string): Promise<void> {
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
  async setDisappearing(conversation: string, expireSeconds: number): Promise<void> {
    await this.sendContent(conversation, {
      kind: 'timer',
      id: this.newId(),
      sentAt: this.now(),
      expireSeconds,
    });
    await this.saveTimer(conversation, expireSeconds);
  }

  private async saveTimer(conversation: string, expireSeconds: number): Promise<void> {
    const existing = await this.deps.store.contact(conversation);
    await this.deps.store.saveContact({
      accountId: conversation,
      name: existing?.name ?? conversation,
      expireSeconds,
    });
  }

  /** Removes messages whose disappearing timer ran out (interfaces call it periodically). */
  purgeExpired(): Promise<StoredMessage[]> {
    return this.deps.store.removeExpired(this.now());
  }

  /** The conversation, oldest first, after removing messages whose timer ran out. */
  async history(conversation: string): Promise<StoredMessage[]> {
    await this.purgeExpired();
    return this.deps.store.messages(conversation);
  }

  // ---- receiving -------------------------------------------------------------------------

  /** Connects the message socket; envelopes are processed until `disconnect`. */
  async connect(): Promise<void> {
    if (this.connection) return;
    this.self();
    const token = await this.api.currentToken();
    this.connection = await RelayConnection.open(this.deps.transport, token, {
      onEnvelope: (envelope) => this.receive(envelope),
      onQueueEmpty: () => this.emit({ type: 'queue-empty' }),
      onClose: (code, reason) => {
        this.connection = undefined;
        this.emit({ type: 'disconnected', code, reason });
      },
    });
    await this.maintainKeys();
    // A message the relay still refuses for now (rate limit, full queue) stays in the outbox for
    // next time; it must not keep the device from receiving.
    await this.flushOutbox().catch((error: unknown) => {
      if (!(error instanceof ClientError && isRetryable(error))) throw error;
    });
  }

  /** Waits until envelopes received so far are handled, sends owed receipts, closes. */
  async disconnect(): Promise<void> {
    const connection = this.connection;
    if (connection) {
      await connection.drain();
      connection.close();
    }
    await this.sendOwedReceipts();
  }

  /**
   * Sends the delivery receipts owed for envelopes already acknowledged, and the contacts a
   * newly linked device asked for.
   */
  async sendOwedReceipts(): Promise<void> {
    if (this.contactsOwed) {
      this.contactsOwed = false;
      await this.syncContacts().catch(() => undefined);
    }
    const owed = [...this.owedReceipts.entries()];
    this.owedReceipts.clear();
    for (const [conversation, messageIds] of owed) {
      await this.sendContent(conversation, {
        kind: 'receipt',
        id: this.newId(),
        sentAt: this.now(),
        receipt: 'delivered',
        messageIds,
      }).catch(() => undefined);
    }
  }

  /**
   * One envelope: decrypt (the engine commits the result with the session), apply it to the
   * store, and only then answer 200 so the relay deletes it. Envelopes that can never be
   * decrypted are answered 200 too, after recording the failure: kept, they would block the
   * queue forever.
   */
  private async receive(envelope: Envelope): Promise<number> {
    // A redelivery after our answer was lost: already applied, just acknowledge it again.
    if (await this.deps.store.isProcessed(envelope.id)) {
      await this.deps.engine.forgetDecrypted(envelope.id);
      return 200;
    }
    let decrypted;
    try {
      decrypted = await this.deps.engine.decrypt(
        envelope.id,
        { type: envelope.type, content: fromBase64(envelope.content) },
        {
          // A new or changed sender key must be the one its account registered on the relay:
          // otherwise anyone who knows an account id could speak in its name.
          confirmIdentity: async (accountId, identityKey) => {
            try {
              return equalBytes(await this.api.identityKey(accountId), identityKey);
            } catch (error) {
              // An account the relay does not know cannot be the sender. Other failures
              // (network, rate limit) throw: the envelope stays queued and comes again.
              if (error instanceof ClientError && error.code === 'UNKNOWN_ACCOUNT') return false;
              throw error;
            }
          },
        },
      );
    } catch (error) {
      if (error instanceof UntrustedIdentityError) {
        // A verified contact's key changed. The message is not lost: it stays queued on the
        // relay (any non-2xx answer keeps it) and decrypts once the change is accepted.
        this.emit({ type: 'identity-changed', accountId: error.accountId });
        return 409;
      }
      if (error instanceof EngineError) {
        this.emit({ type: 'decryption-failed', envelopeId: envelope.id, reason: error.code });
        return 200;
      }
      throw error;
    }
    let content: Content;
    try {
      content = decodeContent(decrypted.plaintext);
    } catch (error) {
      this.emit({
        type: 'decryption-failed',
        envelopeId: envelope.id,
        reason: (error as Error).message,
      });
      await this.deps.engine.forgetDecrypted(envelope.id);
      return 200;
    }
    const identity = await this.deps.engine.identityState(decrypted.sender.accountId);
    if (identity?.changed)
      this.emit({ type: 'identity-changed', accountId: decrypted.sender.accountId });
    await this.apply(decrypted.sender, content, envelope.online);
    await this.processed(envelope.id);
    return 200;
  }

  /**
   * Remembers the envelope as handled, then lets the engine drop its copy of the plaintext. In
   * this order a crash in between only means the engine's copy is applied again, which the
   * message ids de-duplicate.
   */
  private async processed(envelopeId: string): Promise<void> {
    const now = this.now();
    await this.deps.store.markProcessed(envelopeId, now, now - PROCESSED_MEMORY_MS);
    await this.deps.engine.forgetDecrypted(envelopeId);
  }

  private async apply(sender: Address, content: Content, online: boolean): Promise<void> {
    const self = this.self();
    const fromSelf = sender.accountId === self.accountId;
    const now = this.now();
    switch (content.kind) {
      case 'text': {
        if (fromSelf) return;
        const expiresAt = content.expireSeconds ? now + content.expireSeconds * 1000 : undefined;
        const message: StoredMessage = {
          id: content.id,
          conversation: sender.accountId,
          direction: 'in',
          senderDeviceId: sender.deviceId,
          text: content.text,
          sentAt: content.sentAt,
          receivedAt: now,
          status: 'delivered',
          ...(expiresAt === undefined ? {} : { expiresAt }),
        };
        // De-duplicated by message id: a resend after a lost answer is not a second message.
        if (await this.deps.store.addMessage(message)) {
          const owed = this.owedReceipts.get(sender.accountId) ?? [];
          owed.push(content.id);
          this.owedReceipts.set(sender.accountId, owed);
          this.emit({ type: 'message', message });
        }
        return;
      }
      case 'receipt': {
        const status = content.receipt;
        for (const id of content.messageIds) {
          const message = await this.deps.store.message(sender.accountId, id);
          if (message?.direction === 'out') {
            await this.deps.store.updateMessage(sender.accountId, id, {
              status: laterStatus(message.status, status),
            });
          }
        }
        this.emit({
          type: 'receipt',
          conversation: sender.accountId,
          receipt: status,
          messageIds: content.messageIds,
        });
        return;
      }
      case 'typing':
        if (online)
          this.emit({
            type: 'typing',
            from: sender.accountId,
            deviceId: sender.deviceId,
            typing: content.typing,
          });
        return;
      case 'delete': {
        const message = await this.deps.store.message(sender.accountId, content.target);
        if (message && message.direction === 'in') {
          await this.deps.store.updateMessage(sender.accountId, content.target, {
            deleted: true,
            text: '',
          });
          this.emit({ type: 'deleted', conversation: sender.accountId, messageId: content.target });
        }
        return;
      }
      case 'timer':
        await this.saveTimer(sender.accountId, content.expireSeconds);
        this.emit({
          type: 'timer',
          conversation: sender.accountId,
          expireSeconds: content.expireSeconds,
        });
        return;
      case 'sync':
        if (fromSelf) await this.applySync(content.to, content.content);
        return;
      case 'call':
        this.calls.receive(sender, content.callId, content.signal, content.sentAt);
        return;
      case 'contacts':
        if (fromSelf) await this.applyContacts(sender.deviceId, content.contacts);
        return;
      case 'contacts-request':
        if (!fromSelf) return;
        this.contactsOwed = true;
        this.emit({ type: 'contacts-requested', fromDevice: sender.deviceId });
        return;
    }
  }

  /** What another device of this account sent, recorded here as if sent from this device. */
  private async applySync(to: string, content: Content): Promise<void> {
    switch (content.kind) {
      case 'text': {
        const expiresAt = content.expireSeconds
          ? this.now() + content.expireSeconds * 1000
          : undefined;
        const message: StoredMessage = {
          id: content.id,
          conversation: to,
          direction: 'out',
          text: content.text,
          sentAt: content.sentAt,
          receivedAt: this.now(),
          status: 'sent',
          ...(expiresAt === undefined ? {} : { expiresAt }),
        };
        if (await this.deps.store.addMessage(message)) this.emit({ type: 'message', message });
        return;
      }
      case 'delete':
        await this.deps.store.updateMessage(to, content.target, { deleted: true, text: '' });
        this.emit({ type: 'deleted', conversation: to, messageId: content.target });
        return;
      case 'timer':
        await this.saveTimer(to, content.expireSeconds);
        this.emit({ type: 'timer', conversation: to, expireSeconds: content.expireSeconds });
        return;
      case 'call':
        this.calls.receiveSync(to, content.callId, content.signal);
        return;
      default:
        return;
    }
  }

  async close(): Promise<void> {
    await this.calls.close();
    this.connection?.close();
    this.connection = undefined;
    await this.deps.engine.close();
  }
}
