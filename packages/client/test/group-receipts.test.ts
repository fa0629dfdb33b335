import { describe, expect, it } from 'vitest';
import {
  groupMessageStatus,
  receiptCounts,
  recipientsAfterSend,
  recipientsWithReceipt,
} from '../src/groups/group-receipts.ts';

const [BOB, CAROL, DAVE] = ['bob', 'carol', 'dave'];

describe('group receipts: one state per member', () => {
  it('a send marks the members it reached sent and those it left out failed', () => {
    const first = recipientsAfterSend(undefined, [BOB, CAROL], [DAVE]);
    expect(first).toEqual({ [BOB]: 'sent', [CAROL]: 'sent', [DAVE]: 'failed' });
    expect(groupMessageStatus(first, 'sending')).toBe('failed');
    // The retry reaches Dave: nobody else's state goes back.
    const delivered = recipientsWithReceipt(first, BOB, 'read')!;
    const retried = recipientsAfterSend(delivered, [DAVE], []);
    expect(retried).toEqual({ [BOB]: 'read', [CAROL]: 'sent', [DAVE]: 'sent' });
    expect(groupMessageStatus(retried, 'failed')).toBe('sent');
    // A retry that leaves someone out again does not undo an earlier success.
    expect(recipientsAfterSend(retried, [], [BOB])).toEqual(retried);
  });

  it('the message is delivered once every member has it, read once every member read it', () => {
    let recipients = recipientsAfterSend(undefined, [BOB, CAROL], []);
    const step = (member: string, receipt: 'delivered' | 'read') => {
      const next = recipientsWithReceipt(recipients, member, receipt);
      expect(next, `${member} ${receipt}`).toBeDefined();
      recipients = next!;
      return groupMessageStatus(recipients, 'sent');
    };
    expect(step(BOB, 'delivered')).toBe('sent');
    expect(step(CAROL, 'delivered')).toBe('delivered');
    expect(step(BOB, 'read')).toBe('delivered');
    expect(receiptCounts({ recipients })).toEqual({
      members: 2,
      delivered: 2,
      read: 1,
      failed: [],
    });
    expect(step(CAROL, 'read')).toBe('read');
  });

  it('a second device of a member changes nothing: the member already counts', () => {
    const recipients = recipientsWithReceipt({ [BOB]: 'sent' }, BOB, 'delivered')!;
    expect(recipientsWithReceipt(recipients, BOB, 'delivered')).toBeUndefined();
    // Nor does a late delivery receipt after the read one.
    const read = recipientsWithReceipt(recipients, BOB, 'read')!;
    expect(recipientsWithReceipt(read, BOB, 'delivered')).toBeUndefined();
  });

  it('only a recipient of the message acknowledges it', () => {
    expect(recipientsWithReceipt({ [BOB]: 'sent' }, DAVE, 'read')).toBeUndefined();
    expect(recipientsWithReceipt(undefined, BOB, 'read')).toBeUndefined();
  });

  it('a message without recipients (no other member) keeps its own status', () => {
    expect(groupMessageStatus({}, 'sent')).toBe('sent');
    expect(receiptCounts({})).toEqual({ members: 0, delivered: 0, read: 0, failed: [] });
  });
});
