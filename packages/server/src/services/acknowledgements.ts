import type { Logger } from 'pino';
import { isDatabaseUnavailable } from '../db/executor.ts';
import { safeError } from '../logger.ts';
import type { QueuedEnvelopeKey } from '../repositories/envelopes.ts';
import { GroupCommit } from './group-commit.ts';

/** How often keys whose delete failed (the database was away) are deleted again, all together. */
export const ACK_RETRY_INTERVAL_MS = 2_000;
/** Rounds a key is retried before it is left queued (delivered again on the next connection). */
export const ACK_RETRY_ROUNDS = 30;
/** Keys remembered for a retry at most; beyond, they wait for the device's next connection. */
export const ACK_RETRY_MAX_KEYS = 100_000;

/** Keys per retried DELETE: the group commit joins whole submissions up to its own batch size. */
const RETRY_CHUNK = 500;

interface RetryEntry {
  readonly key: QueuedEnvelopeKey;
  /** Retry rounds already tried. */
  readonly rounds: number;
}

const keyOf = (key: QueuedEnvelopeKey): string => `${key.accountId}.${key.deviceId}.${key.seq}`;

/**
 * Deletes acknowledged envelopes: concurrent acknowledgements share one DELETE (group commit).
 * A delete that failed because the database was away is not given up: its keys wait in one set,
 * and a single timer, running only while the set is not empty, submits them all again every
 * ACK_RETRY_INTERVAL_MS, for ACK_RETRY_ROUNDS rounds. The device already has these envelopes; if
 * they are never deleted they come again on its next connection and the client drops them by id
 * (at least once), so giving up after that is safe, only wasteful.
 */
export class AcknowledgementDeletes {
  private readonly commit: GroupCommit<QueuedEnvelopeKey>;
  private readonly retry = new Map<string, RetryEntry>();
  private timer: NodeJS.Timeout | undefined;
  private retrying = false;

  constructor(
    remove: (keys: readonly QueuedEnvelopeKey[]) => Promise<void>,
    private readonly log: Logger,
    private readonly intervalMs = ACK_RETRY_INTERVAL_MS,
  ) {
    this.commit = new GroupCommit(remove, {
      retryAlone: (error) => !isDatabaseUnavailable(error),
    });
  }

  /** Keys waiting for a retry (tests and metrics). */
  get pendingRetries(): number {
    return this.retry.size;
  }

  /** Deletes an acknowledged envelope; never throws (failures are retried or logged). */
  delete(key: QueuedEnvelopeKey): void {
    this.commit.submit([key]).catch((error: unknown) => this.failed([{ key, rounds: 0 }], error));
  }

  private failed(entries: readonly RetryEntry[], error: unknown): void {
    const kept = isDatabaseUnavailable(error)
      ? entries.filter((entry) => entry.rounds < ACK_RETRY_ROUNDS)
      : [];
    let dropped = entries.length - kept.length;
    for (const entry of kept) {
      if (this.retry.size >= ACK_RETRY_MAX_KEYS) {
        dropped += 1;
        continue;
      }
      this.retry.set(keyOf(entry.key), entry);
    }
    if (dropped > 0) {
      this.log.warn(
        { err: safeError(error), envelopes: dropped },
        'acknowledged envelopes not deleted; they come again on the next connection',
      );
    }
    if (this.timer === undefined && this.retry.size > 0) {
      this.timer = setInterval(() => void this.retryAll(), this.intervalMs);
      this.timer.unref();
    }
  }

  private async retryAll(): Promise<void> {
    if (this.retrying) return;
    this.retrying = true;
    const entries = [...this.retry.values()].map((entry) => ({
      ...entry,
      rounds: entry.rounds + 1,
    }));
    this.retry.clear();
    try {
      const chunks: RetryEntry[][] = [];
      for (let i = 0; i < entries.length; i += RETRY_CHUNK) {
        chunks.push(entries.slice(i, i + RETRY_CHUNK));
      }
      await Promise.all(
        chunks.map((chunk) =>
          this.commit
            .submit(chunk.map((entry) => entry.key))
            .catch((error: unknown) => this.failed(chunk, error)),
        ),
      );
    } finally {
      this.retrying = false;
      if (this.retry.size === 0 && this.timer !== undefined) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }
  }

  /** Stops the retry timer (shutdown); keys still waiting come again on the next connection. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
