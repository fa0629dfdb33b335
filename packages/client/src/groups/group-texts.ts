/**
 * The texts this account writes in a group, as their author keeps them: stored first
 * ("sending"), held in the outbox as a one-to-one text is until the relay has them, then marked
 * with whom each reached and whom it left out (group-receipts.ts); a retry goes only to those it
 * left out. Also the read receipts this device owes for the group texts it reads.
 */

import type { AccountId } from '@privcomm/wire';
import { encodeContent, groupContent, type GroupInner } from '../content.ts';
import { UntrustedIdentityError, type Address } from '../engine.ts';
import { sendThroughOutbox } from '../outbox.ts';
import type { ClientStore, StoredMessage } from '../store.ts';
import type { GroupMessages } from './group-messages.ts';
import { groupMessageStatus, receiptCounts, recipientsAfterSend } from './group-receipts.ts';
import type { GroupId } from './group-state.ts';

type GroupText = Extract<GroupInner, { kind: 'text' }>;

export interface GroupTextsDeps {
  readonly store: ClientStore;
  readonly messages: Pick<GroupMessages, 'memberState' | 'send'>;
  self(): Address;
  newId(): string;
  now(): number;
  /** The read-receipt setting, as it is at the time. */
  readReceipts(): boolean;
  /** A read receipt for group messages, pairwise to their author (group id inside). */
  sendReadReceipt(author: AccountId, messageIds: string[], groupId: GroupId): Promise<void>;
}

export class GroupTexts {
  constructor(private readonly deps: GroupTextsDeps) {}

  /** Sends a text to a group this account is a member of; the stored message as it ends. */
  async send(groupId: GroupId, text: string): Promise<StoredMessage> {
    await this.deps.messages.memberState(groupId);
    const now = this.deps.now();
    const inner = await this.text(groupId, this.deps.newId(), now, text);
    const message: StoredMessage = {
      id: inner.id,
      conversation: groupId,
      direction: 'out',
      text,
      sentAt: now,
      receivedAt: now,
      status: 'sending',
      ...(inner.expireSeconds ? { expiresAt: now + inner.expireSeconds * 1000 } : {}),
    };
    await this.deps.store.addMessage(message);
    await this.sendThroughOutbox(groupId, inner);
    return (await this.deps.store.message(groupId, inner.id)) ?? message;
  }

  /**
   * A failed group text again. Left out by a send that reached the others: to those members
   * only, so nobody gets it twice; else (nobody got it) to every member, through the outbox.
   */
  async retry(groupId: GroupId, message: StoredMessage): Promise<void> {
    const inner = await this.text(groupId, message.id, message.sentAt, message.text);
    const { failed, members } = receiptCounts(message);
    if (failed.length > 0 && failed.length < members) {
      await this.sendAndRecord(groupId, inner, failed as AccountId[]);
      return;
    }
    await this.deps.store.updateMessage(groupId, message.id, { status: 'sending' });
    await this.sendThroughOutbox(groupId, inner);
  }

  /**
   * Sends a group text (to the members in `only`: a retry) and records whom it reached and whom
   * it left out in the message's recipients; its status follows them. The outbox's flush sends
   * a kept group text with it.
   */
  async sendAndRecord(
    groupId: GroupId,
    inner: GroupInner,
    only?: readonly AccountId[],
  ): Promise<void> {
    const { reached, missed } = await this.deps.messages.send(groupId, inner, {
      ...(only === undefined ? {} : { only }),
    });
    const message = await this.deps.store.message(groupId, inner.id);
    const recipients = recipientsAfterSend(message?.recipients, reached, missed);
    await this.deps.store.updateMessage(groupId, inner.id, {
      recipients,
      status: groupMessageStatus(recipients, 'sent'),
    });
  }

  /**
   * A group send other than a text (delete, timer): the members it left out (a verified safety
   * number that changed) are an error, raised after the others got it.
   */
  async sendToAll(groupId: GroupId, inner: GroupInner): Promise<void> {
    const { missed } = await this.deps.messages.send(groupId, inner);
    const first = missed[0];
    if (first !== undefined) throw new UntrustedIdentityError(first);
  }

  /**
   * Marks a group's received messages read and tells each author pairwise (not with read
   * receipts turned off). Group members need not be contacts: being in the group together is
   * what lets them see that their message was read, as in Signal.
   */
  async markRead(groupId: GroupId): Promise<number> {
    const unread = (await this.deps.store.messages(groupId)).filter(
      (m) => m.direction === 'in' && m.status !== 'read' && m.sender !== undefined,
    );
    if (unread.length === 0) return 0;
    if (this.deps.readReceipts()) {
      const byAuthor = new Map<AccountId, string[]>();
      for (const m of unread) {
        const author = m.sender as AccountId;
        byAuthor.set(author, [...(byAuthor.get(author) ?? []), m.id]);
      }
      for (const [author, messageIds] of byAuthor)
        await this.deps.sendReadReceipt(author, messageIds, groupId);
    }
    for (const message of unread) {
      await this.deps.store.updateMessage(groupId, message.id, { status: 'read' });
    }
    return unread.length;
  }

  /** A group text's content, with the group's timer. */
  private async text(
    groupId: GroupId,
    id: string,
    sentAt: number,
    text: string,
  ): Promise<GroupText> {
    const expireSeconds = (await this.deps.store.group(groupId))?.expireSeconds ?? 0;
    return { kind: 'text', id, sentAt, text, ...(expireSeconds > 0 ? { expireSeconds } : {}) };
  }

  /** A group text through the outbox; its status follows whom it reached (sendAndRecord). */
  private async sendThroughOutbox(groupId: GroupId, inner: GroupInner): Promise<void> {
    const entry = {
      id: inner.id,
      recipient: this.deps.self().accountId,
      group: groupId,
      content: encodeContent(groupContent(groupId, inner)),
      online: false,
      urgent: false,
      createdAt: this.deps.now(),
    };
    await sendThroughOutbox(this.deps.store, entry, groupId, () =>
      this.sendAndRecord(groupId, inner),
    );
  }
}
