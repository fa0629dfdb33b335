import type { MessageStatus } from '@privcomm/client';

/** The core's delivery state of a sent message, as a mark and as words for screen readers. */
export const STATUS: Record<MessageStatus, { mark: string; words: string }> = {
  sending: { mark: '…', words: 'sending' },
  sent: { mark: '✓', words: 'sent' },
  delivered: { mark: '✓✓', words: 'delivered' },
  read: { mark: '✓✓ read', words: 'read' },
  failed: { mark: '!', words: 'not sent' },
};
