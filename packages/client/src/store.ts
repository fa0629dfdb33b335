/**
 * Where the core keeps its own state (not the protocol state, which the engine owns). Every
 * method commits whole. The CLI implements it on SQLite; MemoryStore serves tests and is the
 * reference for the semantics.
 *
 * Account and device ids are branded (wire's AccountId, DeviceId): a store that reads them back
 * from its own storage checks them with wire's guards (isAccountId, isDeviceId).
 */

import type { AccountId, DeviceId } from '@privcomm/wire';
import type { GroupLog } from './groups/group-log.ts';
import type { GroupId } from './groups/group-state.ts';

export interface Profile {
  readonly relayUrl: string;
  readonly accountId: AccountId;
  readonly deviceId: DeviceId;
  readonly name?: string;
  /** Last rotation of the signed and last-resort prekeys (ms since epoch). */
  readonly keysRotatedAt: number;
}

export interface Contact {
  readonly accountId: AccountId;
  readonly name: string;
  /** Seconds after which messages in this conversation disappear; 0 = never. */
  readonly expireSeconds: number;
}

export type MessageStatus = 'sending' | 'sent' | 'delivered' | 'read' | 'failed';

/**
 * Where a group message stands with one member (groups/group-receipts.ts): `failed` when the send
 * left that member out (a verified safety number that changed), else sent, delivered, read.
 */
export type RecipientStatus = Exclude<MessageStatus, 'sending'>;

export interface StoredMessage {
  /** The sender's message id (from the content), unique per conversation and sender. */
  readonly id: string;
  /** The other account of the conversation, or the group id for a group's message. */
  readonly conversation: string;
  readonly direction: 'in' | 'out';
  /** For incoming messages: the sending account (the conversation) and device. */
  readonly senderDeviceId?: number;
  /** In a group (incoming): the member who sent it (the conversation is the group). */
  readonly sender?: AccountId;
  readonly text: string;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly status: MessageStatus;
  /** When it disappears (ms since epoch), if a timer applies. */
  readonly expiresAt?: number;
  /** Deleted for everyone: the text is gone, the fact remains. */
  readonly deleted?: boolean;
  /**
   * In a group (outgoing): each member account it went to, with its state from the members'
   * receipts (one per member, whichever of its devices sent it). `status` follows the slowest.
   */
  readonly recipients?: Readonly<Record<string, RecipientStatus>>;
}

/**
 * A send that has not been accepted by the relay yet; retried until it is. Either a message
 * (its id is the message's) or a copy to this account's other devices (`recipient` is this
 * account), which waits until `notBefore` (see sync-copies.ts).
 */
export interface OutboxEntry {
  readonly id: string;
  readonly recipient: AccountId;
  readonly content: Uint8Array;
  readonly online: boolean;
  readonly urgent: boolean;
  readonly createdAt: number;
  /** Not sent before this time (ms since epoch); absent: as soon as possible. */
  readonly notBefore?: number;
  /**
   * A group message (its content is a 'group' content): sent to the group's members with the
   * sender key, not to `recipient` (which is then this account, and the entry is no copy).
   */
  readonly group?: string;
}

/** What `updateMessage` may change. */
export type MessageChange = Partial<
  Pick<StoredMessage, 'status' | 'text' | 'deleted' | 'expiresAt' | 'recipients'>
>;

/** A group as this device knows it (groups/): its log, and settings of its own. */
export interface StoredGroup {
  readonly groupId: GroupId;
  readonly log: GroupLog;
  /** Seconds after which messages in this group disappear; 0 = never. */
  readonly expireSeconds: number;
}

/** This device's sender key in a group: its distribution id, new after every removal. */
export interface OwnSenderKey {
  readonly groupId: GroupId;
  readonly distributionId: string;
  readonly createdAt: number;
}

/**
 * A group message this device could not decrypt yet because it lacks its sender's key
 * (NO_SENDER_KEY): kept, and decrypted again when the key arrives.
 */
export interface HeldEnvelope {
  readonly envelopeId: string;
  readonly sender: AccountId;
  readonly senderDeviceId: DeviceId;
  readonly distributionId: string;
  readonly type: number;
  readonly content: Uint8Array;
  readonly receivedAt: number;
}

/** Held envelopes per store; the oldest go beyond it (a member flooding with unknown keys). */
export const MAX_HELD_ENVELOPES = 1000;

/** The groups part of the store (groups/); ClientStore includes it. */
export interface GroupStore {
  groups(): Promise<StoredGroup[]>;
  group(groupId: string): Promise<StoredGroup | undefined>;
  saveGroup(group: StoredGroup): Promise<void>;

  ownSenderKey(groupId: string): Promise<OwnSenderKey | undefined>;
  ownSenderKeyByDistribution(distributionId: string): Promise<OwnSenderKey | undefined>;
  /** Replaces the group's key: the devices that had the previous one are forgotten with it. */
  saveOwnSenderKey(key: OwnSenderKey): Promise<void>;
  /** The devices ("accountId.deviceId") that received this device's key `distributionId`. */
  senderKeyRecipients(distributionId: string): Promise<string[]>;
  addSenderKeyRecipients(distributionId: string, devices: readonly string[]): Promise<void>;
  /** Forgets that these devices have the key (they asked again: their copy was lost). */
  removeSenderKeyRecipients(distributionId: string, devices: readonly string[]): Promise<void>;

  /** Keeps an envelope (the oldest beyond MAX_HELD_ENVELOPES are dropped). */
  holdEnvelope(envelope: HeldEnvelope): Promise<void>;
  /** Oldest first. */
  heldEnvelopes(): Promise<HeldEnvelope[]>;
  releaseEnvelope(envelopeId: string): Promise<void>;
}

export interface ClientStore extends GroupStore {
  profile(): Promise<Profile | undefined>;
  saveProfile(profile: Profile): Promise<void>;

  contacts(): Promise<Contact[]>;
  contact(accountId: string): Promise<Contact | undefined>;
  saveContact(contact: Contact): Promise<void>;

  /** Adds a message unless one with the same (conversation, direction, id) exists; says which. */
  addMessage(message: StoredMessage): Promise<boolean>;
  message(conversation: string, id: string): Promise<StoredMessage | undefined>;
  updateMessage(conversation: string, id: string, change: MessageChange): Promise<void>;
  /** Oldest first. */
  messages(conversation: string): Promise<StoredMessage[]>;
  /** Removes messages whose expiresAt has passed; returns them. */
  removeExpired(now: number): Promise<StoredMessage[]>;

  /** Whether an envelope was already processed (a redelivery after a lost acknowledgement). */
  isProcessed(envelopeId: string): Promise<boolean>;
  /** Records a processed envelope; records older than `forgetBefore` may be dropped. */
  markProcessed(envelopeId: string, at: number, forgetBefore: number): Promise<void>;

  outbox(): Promise<OutboxEntry[]>;
  addOutbox(entry: OutboxEntry): Promise<void>;
  removeOutbox(id: string): Promise<void>;

  /** Every conversation that has at least one message (contacts or not). */
  conversationIds(): Promise<string[]>;
  /** Removes every message of a conversation (the contact, if any, stays). */
  deleteConversation(conversation: string): Promise<void>;

  /**
   * The core's own small records (settings.ts: the settings and the blocked accounts), as text
   * under a key; undefined when never saved.
   */
  value(key: string): Promise<string | undefined>;
  saveValue(key: string, value: string): Promise<void>;

  /**
   * Forgets everything: profile, contacts, messages, outbox, processed ids, values (after the
   * account or this device was deleted on the relay). The store stays open and is afterwards
   * as a new one; on SQLite the rows are overwritten, not only unlinked.
   */
  wipe(): Promise<void>;
}

const key = (conversation: string, direction: string, id: string): string =>
  `${conversation}|${direction}|${id}`;

const statusRank: Record<MessageStatus, number> = {
  failed: 0,
  sending: 1,
  sent: 2,
  delivered: 3,
  read: 4,
};

/** A status never goes backwards (a late delivery receipt does not undo "read"). */
export const laterStatus = (current: MessageStatus, next: MessageStatus): MessageStatus =>
  statusRank[next] > statusRank[current] || current === 'failed' ? next : current;

/** Records a conversation's disappearing-message timer (creating the contact if needed). */
export const saveTimer = async (
  store: ClientStore,
  conversation: AccountId,
  expireSeconds: number,
): Promise<void> => {
  const existing = await store.contact(conversation);
  await store.saveContact({
    accountId: conversation,
    name: existing?.name ?? conversation,
    expireSeconds,
  });
};

export class MemoryStore implements ClientStore {
  private profileValue: Profile | undefined;
  private readonly contactMap = new Map<string, Contact>();
  private readonly messageMap = new Map<string, StoredMessage>();
  private readonly outboxMap = new Map<string, OutboxEntry>();
  private readonly processedMap = new Map<string, number>();
  private readonly valueMap = new Map<string, string>();
  private readonly groupMap = new Map<string, StoredGroup>();
  private readonly ownKeyMap = new Map<string, OwnSenderKey>();
  private readonly keyRecipientMap = new Map<string, Set<string>>();
  private readonly heldMap = new Map<string, HeldEnvelope>();

  async profile(): Promise<Profile | undefined> {
    return this.profileValue;
  }
  async saveProfile(profile: Profile): Promise<void> {
    this.profileValue = profile;
  }
  async contacts(): Promise<Contact[]> {
    return [...this.contactMap.values()];
  }
  async contact(accountId: string): Promise<Contact | undefined> {
    return this.contactMap.get(accountId);
  }
  async saveContact(contact: Contact): Promise<void> {
    this.contactMap.set(contact.accountId, contact);
  }
  async addMessage(message: StoredMessage): Promise<boolean> {
    const k = key(message.conversation, message.direction, message.id);
    if (this.messageMap.has(k)) return false;
    this.messageMap.set(k, message);
    return true;
  }
  async message(conversation: string, id: string): Promise<StoredMessage | undefined> {
    return (
      this.messageMap.get(key(conversation, 'out', id)) ??
      this.messageMap.get(key(conversation, 'in', id))
    );
  }
  async updateMessage(conversation: string, id: string, change: MessageChange): Promise<void> {
    for (const direction of ['out', 'in']) {
      const k = key(conversation, direction, id);
      const current = this.messageMap.get(k);
      if (current) this.messageMap.set(k, { ...current, ...change });
    }
  }
  async messages(conversation: string): Promise<StoredMessage[]> {
    return [...this.messageMap.values()]
      .filter((message) => message.conversation === conversation)
      .sort((a, b) => a.sentAt - b.sentAt || a.receivedAt - b.receivedAt);
  }
  async removeExpired(now: number): Promise<StoredMessage[]> {
    const expired = [...this.messageMap.entries()].filter(
      ([, message]) => message.expiresAt !== undefined && message.expiresAt <= now,
    );
    for (const [k] of expired) this.messageMap.delete(k);
    return expired.map(([, message]) => message);
  }
  async isProcessed(envelopeId: string): Promise<boolean> {
    return this.processedMap.has(envelopeId);
  }
  async markProcessed(envelopeId: string, at: number, forgetBefore: number): Promise<void> {
    this.processedMap.set(envelopeId, at);
    for (const [id, time] of this.processedMap)
      if (time < forgetBefore) this.processedMap.delete(id);
  }
  async outbox(): Promise<OutboxEntry[]> {
    return [...this.outboxMap.values()].sort((a, b) => a.createdAt - b.createdAt);
  }
  async addOutbox(entry: OutboxEntry): Promise<void> {
    this.outboxMap.set(entry.id, entry);
  }
  async removeOutbox(id: string): Promise<void> {
    this.outboxMap.delete(id);
  }
  async conversationIds(): Promise<string[]> {
    return [...new Set([...this.messageMap.values()].map((message) => message.conversation))];
  }
  async deleteConversation(conversation: string): Promise<void> {
    for (const [k, message] of this.messageMap)
      if (message.conversation === conversation) this.messageMap.delete(k);
  }
  async value(key: string): Promise<string | undefined> {
    return this.valueMap.get(key);
  }
  async saveValue(key: string, value: string): Promise<void> {
    this.valueMap.set(key, value);
  }
  async groups(): Promise<StoredGroup[]> {
    return [...this.groupMap.values()].sort((a, b) => (a.groupId < b.groupId ? -1 : 1));
  }
  async group(groupId: string): Promise<StoredGroup | undefined> {
    return this.groupMap.get(groupId);
  }
  async saveGroup(group: StoredGroup): Promise<void> {
    this.groupMap.set(group.groupId, group);
  }
  async ownSenderKey(groupId: string): Promise<OwnSenderKey | undefined> {
    return this.ownKeyMap.get(groupId);
  }
  async ownSenderKeyByDistribution(distributionId: string): Promise<OwnSenderKey | undefined> {
    return [...this.ownKeyMap.values()].find((k) => k.distributionId === distributionId);
  }
  async saveOwnSenderKey(key: OwnSenderKey): Promise<void> {
    const previous = this.ownKeyMap.get(key.groupId);
    if (previous && previous.distributionId !== key.distributionId) {
      this.keyRecipientMap.delete(previous.distributionId);
    }
    this.ownKeyMap.set(key.groupId, key);
  }
  async senderKeyRecipients(distributionId: string): Promise<string[]> {
    return [...(this.keyRecipientMap.get(distributionId) ?? [])].sort();
  }
  async addSenderKeyRecipients(distributionId: string, devices: readonly string[]): Promise<void> {
    const set = this.keyRecipientMap.get(distributionId) ?? new Set<string>();
    for (const device of devices) set.add(device);
    this.keyRecipientMap.set(distributionId, set);
  }
  async removeSenderKeyRecipients(
    distributionId: string,
    devices: readonly string[],
  ): Promise<void> {
    for (const device of devices) this.keyRecipientMap.get(distributionId)?.delete(device);
  }
  async holdEnvelope(envelope: HeldEnvelope): Promise<void> {
    this.heldMap.set(envelope.envelopeId, envelope);
    const held = await this.heldEnvelopes();
    for (const old of held.slice(0, Math.max(0, held.length - MAX_HELD_ENVELOPES))) {
      this.heldMap.delete(old.envelopeId);
    }
  }
  async heldEnvelopes(): Promise<HeldEnvelope[]> {
    return [...this.heldMap.values()].sort((a, b) => a.receivedAt - b.receivedAt);
  }
  async releaseEnvelope(envelopeId: string): Promise<void> {
    this.heldMap.delete(envelopeId);
  }
  async wipe(): Promise<void> {
    this.profileValue = undefined;
    for (const map of [
      this.contactMap,
      this.messageMap,
      this.outboxMap,
      this.processedMap,
      this.valueMap,
      this.groupMap,
      this.ownKeyMap,
      this.keyRecipientMap,
      this.heldMap,
    ])
      map.clear();
  }
}
