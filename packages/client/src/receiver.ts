import { isEnvelopeId, type AccountId, type Envelope } from '@privcomm/wire';
import { equalBytes, fromBase64 } from './bytes.ts';
import {
  ContentError,
  decodeContent,
  type CallSignal,
  type Content,
  type SyncedContact,
} from './content.ts';
import {
  EngineError,
  NoSenderKeyError,
  UntrustedIdentityError,
  type Address,
  type Decrypted,
  type SignalEngine,
} from './engine.ts';
import { ClientError } from './errors.ts';
import type { ClientEvent } from './events.ts';
import type { GroupManager } from './groups/group-manager.ts';
import type { GroupMessages } from './groups/group-messages.ts';
import {
  groupMessageStatus,
  recipientsWithReceipt,
  type Recipients,
} from './groups/group-receipts.ts';
import { reasonOf, type ClientLogger } from './logger.ts';
import {
  laterStatus,
  saveTimer,
  type ClientStore,
  type Contact,
  type StoredMessage,
} from './store.ts';

/** Envelope ids are remembered this long: the relay keeps an envelope at most 30 days. */
const PROCESSED_MEMORY_MS = 31 * 24 * 60 * 60 * 1000;

/** What the receive pipeline needs; calls/ handles call signals. */
export interface ReceiverDeps {
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  /** The identity key an account registered on the relay (throws UNKNOWN_ACCOUNT if none). */
  identityKey(accountId: AccountId): Promise<Uint8Array>;
  readonly calls: {
    receive(sender: Address, callId: string, signal: CallSignal, sentAt: number): void;
    receiveSync(peer: AccountId, callId: string, signal: CallSignal): void;
  };
  readonly groups: Pick<GroupManager, 'receive' | 'isMember' | 'info'> &
    Pick<GroupMessages, 'answerKeyRequest' | 'requestKey'>;
  self(): Address;
  /** Whether this device blocked the account: what it sends is dropped unread. */
  isBlocked(accountId: AccountId): boolean;
  /** Whether typing indicators are on (settings.ts): off, none is shown. */
  typingIndicators(): boolean;
  now(): number;
  emit(event: ClientEvent): void;
  readonly logger: ClientLogger;
}

/** Delivery receipts owed to one account: for its messages, or for its messages in a group. */
export interface OwedReceipts {
  readonly to: AccountId;
  readonly groupId?: string;
  readonly messageIds: string[];
}

/** The relay's answer to an envelope: 200 deletes it there, anything else keeps it queued. */
export type EnvelopeAnswer = 200 | 409 | 500;

/**
 * The receive pipeline, one envelope at a time: check it, decrypt it (the engine commits the
 * result with the session), apply it to the store, and only then answer 200 so the relay deletes
 * it. An envelope that can never be used (malformed, undecryptable, content of an unknown kind)
 * is answered 200 too, after logging why: kept, it would block the queue forever.
 */
export class Receiver {
  /**
   * Delivery receipts owed, sent after the envelopes that caused them are acknowledged; by
   * account, and by account and group.
   */
  private readonly owed = new Map<string, OwedReceipts>();
  /** A newly linked device of this account asked for the contacts. */
  private contactsOwedValue = false;

  constructor(private readonly deps: ReceiverDeps) {}

  /**
   * Records delivery receipts owed to an account (again, when sending them failed), for its
   * messages in a group when `groupId` is given.
   */
  owe(to: AccountId, messageIds: readonly string[], groupId?: string): void {
    const key = groupId === undefined ? to : `${to}|${groupId}`;
    const earlier = this.owed.get(key)?.messageIds ?? [];
    this.owed.set(key, {
      to,
      ...(groupId === undefined ? {} : { groupId }),
      messageIds: [...earlier, ...messageIds],
    });
  }

  /** The receipts owed so far; taking them clears them. */
  takeOwedReceipts(): OwedReceipts[] {
    const owed = [...this.owed.values()];
    this.owed.clear();
    return owed;
  }

  /** Whether a linked device asked for the contacts; taking it clears it. */
  takeContactsOwed(): boolean {
    const owed = this.contactsOwedValue;
    this.contactsOwedValue = false;
    return owed;
  }

  async receive(envelope: Envelope): Promise<EnvelopeAnswer> {
    const { engine, store } = this.deps;
    if (!isEnvelopeId(envelope.id)) return this.refuse('envelope without a valid id');
    let ciphertext: Uint8Array;
    try {
      ciphertext = fromBase64(envelope.content);
    } catch {
      return this.refuse('envelope content is not base64');
    }
    // A redelivery after our answer was lost: already applied, just acknowledge it again.
    if (await store.isProcessed(envelope.id)) {
      await engine.forgetDecrypted(envelope.id);
      return 200;
    }
    let decrypted: Decrypted;
    try {
      decrypted = await engine.decrypt(
        envelope.id,
        { type: envelope.type, content: ciphertext },
        { confirmIdentity: (accountId, key) => this.confirmIdentity(accountId, key) },
      );
    } catch (error) {
      if (error instanceof NoSenderKeyError) {
        // A member's message under a key this device does not have (yet): kept here, not
        // dropped, and the sender is asked for its key; it is decrypted when the key arrives.
        await this.holdForKey(envelope.id, error, envelope.type, ciphertext);
        return 200;
      }
      if (error instanceof UntrustedIdentityError) {
        // A verified contact's key changed. The message is not lost: it stays queued on the
        // relay (any non-2xx answer keeps it) and decrypts once the change is accepted.
        this.deps.emit({ type: 'identity-changed', accountId: error.accountId });
        this.deps.logger.log('info', 'envelope kept', 'identity changed');
        return 409;
      }
      if (error instanceof EngineError) {
        this.deps.emit({ type: 'decryption-failed', envelopeId: envelope.id, reason: error.code });
        this.deps.logger.log('warn', 'envelope dropped', reasonOf(error));
        return 200;
      }
      throw error;
    }
    let content: Content;
    try {
      content = decodeContent(decrypted.plaintext);
    } catch (error) {
      const reason = error instanceof ContentError ? error.message : 'content refused';
      this.deps.emit({ type: 'decryption-failed', envelopeId: envelope.id, reason });
      this.deps.logger.log('warn', 'content dropped', reason);
      await engine.forgetDecrypted(envelope.id);
      return 200;
    }
    if (
      decrypted.sender.accountId !== this.deps.self().accountId &&
      this.deps.isBlocked(decrypted.sender.accountId)
    ) {
      // Decrypted (the session must advance) and acknowledged, but nothing of it is kept.
      await this.processed(envelope.id);
      return 200;
    }
    const identity = await engine.identityState(decrypted.sender.accountId);
    if (identity?.changed)
      this.deps.emit({ type: 'identity-changed', accountId: decrypted.sender.accountId });
    if (decrypted.distributionId !== undefined && content.kind !== 'group') {
      // A sender key carries group messages only: anything else under one is refused.
      this.deps.logger.log('warn', 'content dropped', 'not a group message under a sender key');
      await this.processed(envelope.id);
      return 200;
    }
    await this.apply(decrypted.sender, content, envelope.online);
    await this.processed(envelope.id);
    return 200;
  }

  private async holdForKey(
    envelopeId: string,
    error: NoSenderKeyError,
    type: number,
    content: Uint8Array,
  ): Promise<void> {
    await this.deps.store.holdEnvelope({
      envelopeId,
      sender: error.sender.accountId,
      senderDeviceId: error.sender.deviceId,
      distributionId: error.distributionId,
      type,
      content,
      receivedAt: this.deps.now(),
    });
    this.deps.logger.log('info', 'group message kept', 'no sender key');
    await this.deps.groups
      .requestKey(error.sender, error.distributionId)
      .catch((cause: unknown) =>
        this.deps.logger.log('warn', 'sender key request failed', reasonOf(cause)),
      );
  }

  /** Decrypts the envelopes kept for a sender key that just arrived. */
  private async releaseHeld(sender: Address, distributionId: string): Promise<void> {
    const held = (await this.deps.store.heldEnvelopes()).filter(
      (h) =>
        h.sender === sender.accountId &&
        h.senderDeviceId === sender.deviceId &&
        h.distributionId === distributionId,
    );
    for (const item of held) {
      try {
        const decrypted = await this.deps.engine.decrypt(item.envelopeId, {
          type: item.type,
          content: item.content,
        });
        await this.apply(decrypted.sender, decodeContent(decrypted.plaintext), false);
        await this.processed(item.envelopeId);
      } catch (error) {
        this.deps.logger.log('warn', 'kept group message dropped', reasonOf(error));
      }
      await this.deps.store.releaseEnvelope(item.envelopeId);
    }
  }

  private refuse(reason: string): EnvelopeAnswer {
    this.deps.logger.log('warn', 'envelope dropped', reason);
    return 200;
  }

  /**
   * A new or changed sender key must be the one its account registered on the relay: otherwise
   * anyone who knows an account id could speak in its name.
   */
  private async confirmIdentity(accountId: AccountId, identityKey: Uint8Array): Promise<boolean> {
    try {
      return equalBytes(await this.deps.identityKey(accountId), identityKey);
    } catch (error) {
      // An account the relay does not know cannot be the sender. Other failures (network, rate
      // limit) throw: the envelope stays queued and comes again.
      if (error instanceof ClientError && error.code === 'UNKNOWN_ACCOUNT') return false;
      throw error;
    }
  }

  /**
   * Remembers the envelope as handled, then lets the engine drop its copy of the plaintext. In
   * this order a crash in between only means the engine's copy is applied again, which the
   * message ids de-duplicate.
   */
  private async processed(envelopeId: string): Promise<void> {
    const now = this.deps.now();
    await this.deps.store.markProcessed(envelopeId, now, now - PROCESSED_MEMORY_MS);
    await this.deps.engine.forgetDecrypted(envelopeId);
  }

  private async apply(sender: Address, content: Content, online: boolean): Promise<void> {
    const { store, emit } = this.deps;
    const fromSelf = sender.accountId === this.deps.self().accountId;
    const now = this.deps.now();
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
        if (await store.addMessage(message)) {
          this.owe(sender.accountId, [content.id]);
          emit({ type: 'message', message });
        }
        return;
      }
      case 'receipt': {
        if (content.groupId !== undefined) {
          if (!fromSelf) await this.applyGroupReceipt(sender.accountId, content);
          return;
        }
        const status = content.receipt;
        for (const id of content.messageIds) {
          const message = await store.message(sender.accountId, id);
          if (message?.direction === 'out') {
            await store.updateMessage(sender.accountId, id, {
              status: laterStatus(message.status, status),
            });
          }
        }
        emit({
          type: 'receipt',
          conversation: sender.accountId,
          receipt: status,
          messageIds: content.messageIds,
        });
        return;
      }
      case 'typing':
        if (online && this.deps.typingIndicators())
          emit({
            type: 'typing',
            from: sender.accountId,
            deviceId: sender.deviceId,
            typing: content.typing,
          });
        return;
      case 'delete': {
        const message = await store.message(sender.accountId, content.target);
        if (message && message.direction === 'in') {
          await store.updateMessage(sender.accountId, content.target, { deleted: true, text: '' });
          emit({ type: 'deleted', conversation: sender.accountId, messageId: content.target });
        }
        return;
      }
      case 'timer':
        // Someone who is not a contact cannot make themselves one by setting a timer; their
        // messages carry their own timer anyway.
        if (!(await store.contact(sender.accountId))) return;
        await saveTimer(store, sender.accountId, content.expireSeconds);
        emit({
          type: 'timer',
          conversation: sender.accountId,
          expireSeconds: content.expireSeconds,
        });
        return;
      case 'sync':
        if (fromSelf) await this.applySync(content.to, content.content);
        return;
      case 'call':
        this.deps.calls.receive(sender, content.callId, content.signal, content.sentAt);
        return;
      case 'contacts':
        if (fromSelf) await this.applyContacts(sender.deviceId, content.contacts);
        return;
      case 'contacts-request':
        if (!fromSelf) return;
        this.contactsOwedValue = true;
        // Only a device that just joined the account asks for the contacts.
        emit({ type: 'device-joined', deviceId: sender.deviceId });
        emit({ type: 'contacts-requested', fromDevice: sender.deviceId });
        return;
      case 'group-change':
        await this.deps.groups.receive(sender, content.change);
        return;
      case 'group':
        await this.applyGroup(sender, content.groupId, content.content, fromSelf);
        return;
      case 'sender-key':
        if (fromSelf || !(await this.deps.groups.isMember(content.groupId, sender.accountId))) {
          this.deps.logger.log('warn', 'sender key refused', 'not a member');
          return;
        }
        try {
          await this.deps.engine.processSenderKeyDistribution(sender, fromBase64(content.message));
        } catch (error) {
          this.deps.logger.log('warn', 'sender key refused', reasonOf(error));
          return;
        }
        await this.releaseHeld(sender, content.distributionId);
        return;
      case 'sender-key-request':
        if (fromSelf) return;
        await this.deps.groups
          .answerKeyRequest(sender, content.distributionId)
          .catch((error: unknown) =>
            this.deps.logger.log('warn', 'sender key not sent', reasonOf(error)),
          );
        return;
    }
  }

  /**
   * A group message: from a member of this device's current state of the group (a removed member
   * who keeps sending is not heard), or this account's copy of what another of its devices sent.
   */
  private async applyGroup(
    sender: Address,
    groupId: string,
    inner: Content,
    fromSelf: boolean,
  ): Promise<void> {
    const { store, emit } = this.deps;
    if (!(await this.deps.groups.isMember(groupId, sender.accountId))) {
      this.deps.logger.log('warn', 'group message dropped', 'sender is not a member');
      return;
    }
    const now = this.deps.now();
    switch (inner.kind) {
      case 'text': {
        const expiresAt = inner.expireSeconds ? now + inner.expireSeconds * 1000 : undefined;
        const message: StoredMessage = {
          id: inner.id,
          conversation: groupId,
          direction: fromSelf ? 'out' : 'in',
          ...(fromSelf
            ? { recipients: await this.otherMembers(groupId) }
            : { sender: sender.accountId, senderDeviceId: sender.deviceId }),
          text: inner.text,
          sentAt: inner.sentAt,
          receivedAt: now,
          status: fromSelf ? 'sent' : 'delivered',
          ...(expiresAt === undefined ? {} : { expiresAt }),
        };
        // De-duplicated by message id: a retry that reaches this device again is not shown twice.
        if (await store.addMessage(message)) {
          if (!fromSelf) this.owe(sender.accountId, [inner.id], groupId);
          emit({ type: 'message', message });
        }
        return;
      }
      case 'delete': {
        const message = await store.message(groupId, inner.target);
        // Only its author deletes a message for everyone.
        const author = message?.direction === 'out' ? this.deps.self().accountId : message?.sender;
        if (message && author === sender.accountId) {
          await store.updateMessage(groupId, inner.target, { deleted: true, text: '' });
          emit({ type: 'deleted', conversation: groupId, messageId: inner.target });
        }
        return;
      }
      case 'typing':
        if (!fromSelf && this.deps.typingIndicators())
          emit({
            type: 'typing',
            from: sender.accountId,
            deviceId: sender.deviceId,
            typing: inner.typing,
          });
        return;
      case 'timer': {
        // Any member sets the group's timer, for everyone (as either side of a conversation).
        const group = await store.group(groupId);
        if (!group) return;
        await store.saveGroup({ ...group, expireSeconds: inner.expireSeconds });
        emit({ type: 'timer', conversation: groupId, expireSeconds: inner.expireSeconds });
        return;
      }
      default:
        // A receipt travels pairwise, never inside a group message (group-receipts.ts).
        return;
    }
  }

  /**
   * Another device of this account sent a group text: its recipients here are the group's other
   * members, as this device knows them, so that their receipts count here too.
   */
  private async otherMembers(groupId: string): Promise<Recipients> {
    const self = this.deps.self().accountId;
    const { members } = await this.deps.groups.info(groupId);
    return Object.fromEntries(
      members.filter((m) => m.accountId !== self).map((m) => [m.accountId, 'sent' as const]),
    );
  }

  /** A member's receipt for this account's messages in a group: that member's state moves on. */
  private async applyGroupReceipt(
    member: AccountId,
    receipt: Extract<Content, { kind: 'receipt' }>,
  ): Promise<void> {
    const { store } = this.deps;
    const groupId = receipt.groupId as string;
    const applied: string[] = [];
    for (const id of receipt.messageIds) {
      const message = await store.message(groupId, id);
      if (message?.direction !== 'out') continue;
      const recipients = recipientsWithReceipt(message.recipients, member, receipt.receipt);
      if (!recipients) continue;
      const status = groupMessageStatus(recipients, message.status);
      await store.updateMessage(groupId, id, { recipients, status });
      applied.push(id);
    }
    if (applied.length > 0)
      this.deps.emit({
        type: 'receipt',
        conversation: groupId,
        from: member,
        receipt: receipt.receipt,
        messageIds: applied,
      });
  }

  /** What another device of this account sent, recorded here as if sent from this device. */
  private async applySync(to: AccountId, content: Content): Promise<void> {
    const { store, emit } = this.deps;
    switch (content.kind) {
      case 'text': {
        const now = this.deps.now();
        const expiresAt = content.expireSeconds ? now + content.expireSeconds * 1000 : undefined;
        const message: StoredMessage = {
          id: content.id,
          conversation: to,
          direction: 'out',
          text: content.text,
          sentAt: content.sentAt,
          receivedAt: now,
          status: 'sent',
          ...(expiresAt === undefined ? {} : { expiresAt }),
        };
        if (await store.addMessage(message)) emit({ type: 'message', message });
        return;
      }
      case 'delete':
        await store.updateMessage(to, content.target, { deleted: true, text: '' });
        emit({ type: 'deleted', conversation: to, messageId: content.target });
        return;
      case 'timer':
        await saveTimer(store, to, content.expireSeconds);
        emit({ type: 'timer', conversation: to, expireSeconds: content.expireSeconds });
        return;
      case 'call':
        this.deps.calls.receiveSync(to, content.callId, content.signal);
        return;
      default:
        return;
    }
  }

  /** Names from another device of this account; a name taken here by another account is kept. */
  private async applyContacts(fromDevice: number, synced: readonly SyncedContact[]) {
    const { store } = this.deps;
    const self = this.deps.self().accountId;
    const saved: Contact[] = [];
    const local = new Map((await store.contacts()).map((c) => [c.accountId, c]));
    for (const { accountId, name } of synced) {
      if (accountId === self) continue;
      if ([...local.values()].some((c) => c.name === name && c.accountId !== accountId)) continue;
      const existing = local.get(accountId);
      if (existing?.name === name) continue;
      const contact = { accountId, name, expireSeconds: existing?.expireSeconds ?? 0 };
      await store.saveContact(contact);
      local.set(accountId, contact);
      saved.push(contact);
    }
    if (saved.length > 0) this.deps.emit({ type: 'contacts-synced', fromDevice, contacts: saved });
  }
}
