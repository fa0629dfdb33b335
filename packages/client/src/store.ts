/**
 * Where the core keeps its own state (not the protocol state, which the engine owns). Every
 * method commits whole. The CLI implements it on SQLite; MemoryStore serves tests and is the
 * reference for the semantics.
 *
 * Account and device ids are branded (wire's AccountId, DeviceId): a store that reads them back
 * from its own storage checks them with wire's guards (isAccountId, isDeviceId).
 */

import type { AccountId, DeviceId } from '@privcomm/wire';

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

export interface StoredMessage {
  /** The sender's message id (from the content), unique per conversation and sender. */
  readonly id: string;
  /** The other account of the conversation. */
  readonly conversation: string;
  readonly direction: 'in' | 'out';
  /** For incoming messages: the sending account (the conversation) and device. */
  readonly senderDeviceId?: number;
  readonly text: string;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly status: MessageStatus;
  /** When it disappears (ms since epoch), if a timer applies. */
  readonly expiresAt?: number;
  /** Deleted for everyone: the text is gone, the fact remains. */
  readonly deleted?: boolean;
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
}

export interface ClientStore {
  profile(): Promise<Profile | undefined>;
  saveProfile(profile: Profile): Promise<void>;

  contacts(): Promise<Contact[]>;
  contact(accountId: string): Promise<Contact | undefined>;
  saveContact(contact: Contact): Promise<void>;

  /** Adds a message unless one with the same (conversation, direction, id) exists; says which. */
  addMessage(message: StoredMessage): Promise<boolean>;
  message(conversation: string, id: string): Promise<StoredMessage | undefined>;
  updateMessage(
    conversation: string,
    id: string,
    change: Partial<Pick<StoredMessage, 'status' | 'text' | 'deleted' | 'expiresAt'>>,
  ): Promise<void>;
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
  async updateMessage(
    conversation: string,
    id: string,
    change: Partial<Pick<StoredMessage, 'status' | 'text' | 'deleted' | 'expiresAt'>>,
  ): Promise<void> {
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
}
