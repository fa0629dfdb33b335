import type { AccountId } from '@privcomm/wire';
import { decodeContent, encodeContent, type Content } from './content.ts';
import { ClientError, isRetryable } from './errors.ts';
import { reasonOf, type ClientLogger } from './logger.ts';
import type { Sender } from './sender.ts';
import type { ClientStore, OutboxEntry, StoredMessage } from './store.ts';

/**
 * The copies of what this device sends (texts, deletions, timers) to the account's other
 * devices. Sent right after the message, the copy was the next row in the relay's queue table:
 * a row for the recipient followed by one for the sender's own device, which names the sender of
 * a message whose envelope has no sender (SECURITY.md, finding 5 of the audit). So each copy is
 * its own outbox entry, stored in this device's store before the message leaves the outbox
 * (never lost, and kept across restarts), and sent on its own after an independent random
 * delay drawn from the CSPRNG: while the client is connected, by a timer at its time; otherwise
 * when it next connects. It is not sent by `flushOutbox`, which runs right before a new send in
 * one-shot commands and would put the copy next to that message.
 *
 * Call signals are not delayed (the callee's other devices must stop ringing at once).
 *
 * Not batched: copies due together go out back to back, one envelope each. One envelope holding
 * several copies would also hide how many were sent, but needs a content kind that the devices
 * already linked do not read yet.
 */

export interface SyncCopyDelay {
  /** Shortest wait before a copy goes out (ms). */
  readonly minMs: number;
  /** Longest wait (ms); each copy waits a uniformly random time in [minMs, maxMs]. */
  readonly maxMs: number;
}

/** Long enough that the copy is rarely next to the message on a relay with traffic. */
export const DEFAULT_SYNC_COPY_DELAY: SyncCopyDelay = { minMs: 10_000, maxMs: 180_000 };
/** A copy later than this is no longer a copy worth having on the other devices. */
const MAX_SYNC_COPY_DELAY_MS = 3_600_000;

/** A copy kept for later (rate limit, full queue, no network) waits at least this long again. */
const MIN_RETRY_MS = 1_000;

/** Checks a configured delay window; a wrong one is a programming error of the platform. */
export const checkSyncCopyDelay = (delay: SyncCopyDelay): SyncCopyDelay => {
  const { minMs, maxMs } = delay;
  if (
    !Number.isSafeInteger(minMs) ||
    !Number.isSafeInteger(maxMs) ||
    minMs < 0 ||
    maxMs < minMs ||
    maxMs > MAX_SYNC_COPY_DELAY_MS
  )
    throw new RangeError(
      `syncCopyDelay must be whole milliseconds with 0 <= minMs <= maxMs <= ${MAX_SYNC_COPY_DELAY_MS}`,
    );
  return delay;
};

/** A uniformly random whole number in [min, max], from 48 bits of the CSPRNG. */
export const randomBetween = (
  randomBytes: (length: number) => Uint8Array,
  min: number,
  max: number,
): number => {
  let value = 0;
  for (const byte of randomBytes(6)) value = value * 256 + byte;
  return min + Math.floor((value / 2 ** 48) * (max - min + 1));
};

export interface SyncCopiesDeps {
  readonly store: ClientStore;
  readonly sender: Pick<Sender, 'send'>;
  readonly self: () => AccountId;
  readonly now: () => number;
  readonly randomBytes: (length: number) => Uint8Array;
  readonly newId: () => string;
  readonly delay: SyncCopyDelay;
  readonly logger: ClientLogger;
}

export class SyncCopies {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armed = false;
  /** One pass at a time: a timer and a reconnection must not send the same copy twice. */
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly deps: SyncCopiesDeps) {}

  /** Whether an outbox entry is a copy (addressed to this account) rather than a message. */
  isCopy(entry: OutboxEntry): boolean {
    return entry.recipient === this.deps.self() && entry.group === undefined;
  }

  /** A fresh random wait from now, independent of every other. */
  private randomTime(atLeast = 0): number {
    const { delay, now, randomBytes } = this.deps;
    return now() + Math.max(atLeast, randomBetween(randomBytes, delay.minMs, delay.maxMs));
  }

  /**
   * Stores a content that is its own copy (a group's change or message, which names its group)
   * for a random time from now, as `queue` does.
   */
  async queueOwn(content: Content): Promise<void> {
    await this.deps.store.addOutbox({
      id: this.deps.newId(),
      recipient: this.deps.self(),
      content: encodeContent(content),
      online: false,
      urgent: false,
      createdAt: this.deps.now(),
      notBefore: this.randomTime(),
    });
    if (this.armed) await this.schedule();
  }

  /** Stores the copy of `content`, sent to `to`, for a random time from now; re-arms the timer. */
  async queue(to: AccountId, content: Content): Promise<void> {
    const sync: Content = {
      kind: 'sync',
      id: this.deps.newId(),
      sentAt: content.sentAt,
      to,
      content,
    };
    await this.deps.store.addOutbox({
      id: sync.id,
      recipient: this.deps.self(),
      content: encodeContent(sync),
      online: false,
      urgent: false,
      createdAt: this.deps.now(),
      notBefore: this.randomTime(),
    });
    if (this.armed) await this.schedule();
  }

  /**
   * Sends the copies whose time has come, earliest first. A copy the relay refuses for now (rate
   * limit, full queue, no network) stays, with a new random time; no network also ends the pass.
   * One refused for good, or with no other device to go to, is dropped.
   */
  sendDue(): Promise<void> {
    const pass = this.running.then(() => this.sendDueNow());
    this.running = pass.catch(() => undefined);
    return pass;
  }

  private async sendDueNow(): Promise<void> {
    const due = (await this.deps.store.outbox())
      .filter((entry) => this.isCopy(entry) && (entry.notBefore ?? 0) <= this.deps.now())
      .sort((a, b) => (a.notBefore ?? 0) - (b.notBefore ?? 0));
    for (const entry of due) {
      try {
        await this.deps.sender.send(entry.recipient, entry.content);
      } catch (error) {
        if (error instanceof ClientError && isRetryable(error)) {
          this.deps.logger.log('info', 'copy to own devices kept', reasonOf(error));
          await this.deps.store.addOutbox({ ...entry, notBefore: this.randomTime(MIN_RETRY_MS) });
          if (error.code === 'RELAY_UNREACHABLE') throw error;
          continue;
        }
        this.deps.logger.log('warn', 'copy to own devices failed', reasonOf(error));
      }
      await this.deps.store.removeOutbox(entry.id);
    }
  }

  /**
   * Drops the waiting copies of sent messages that have just disappeared (their timer ran out):
   * the copy holds the text, which must not outlive the message in this device's store.
   */
  async dropCopiesOf(removed: readonly StoredMessage[]): Promise<void> {
    const gone = new Set(
      removed.filter((m) => m.direction === 'out').map((m) => `${m.conversation}|${m.id}`),
    );
    if (gone.size === 0) return;
    for (const entry of await this.deps.store.outbox()) {
      if (!this.isCopy(entry)) continue;
      const sync = decodeContent(entry.content);
      if (sync.kind === 'sync' && gone.has(`${sync.to}|${sync.content.id}`))
        await this.deps.store.removeOutbox(entry.id);
    }
  }

  /** While connected: sends what is due now, then at each copy's time. */
  async start(): Promise<void> {
    this.armed = true;
    try {
      await this.sendDue();
    } finally {
      // Copies kept for later (a new random time) still get their timer.
      await this.schedule();
    }
  }

  /** Disconnected: copies wait in the store for the next connection. */
  stop(): void {
    this.armed = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async schedule(): Promise<void> {
    const next = (await this.deps.store.outbox())
      .filter((entry) => this.isCopy(entry))
      .reduce((earliest, entry) => Math.min(earliest, entry.notBefore ?? 0), Infinity);
    if (!this.armed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (next === Infinity) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.sendDue()
          .catch((error: unknown) =>
            this.deps.logger.log('warn', 'copy to own devices failed', reasonOf(error)),
          )
          .then(() => this.schedule())
          .catch((error: unknown) =>
            this.deps.logger.log('warn', 'copy to own devices failed', reasonOf(error)),
          );
      },
      Math.max(0, next - this.deps.now()),
    );
    // A waiting copy alone must not keep a Node process alive (it waits in the store); React
    // Native's timers have no unref.
    (this.timer as { unref?: () => void }).unref?.();
  }
}
