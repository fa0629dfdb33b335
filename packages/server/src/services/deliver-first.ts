import { QUERY_TIMEOUT_MS } from '../db/database.ts';
import type { Metrics } from '../metrics.ts';
import type { DeviceQueue, NewEnvelope } from '../repositories/envelopes.ts';
import type { DirectDeliveries, DirectHandle } from './direct-deliveries.ts';

/** What deliver-first needs of a device's socket on this instance. */
export interface DirectTarget {
  /**
   * Whether an envelope may go out now, before any write: the socket is open, everything stored
   * for the device was already sent on it, no write for it is under way, and its window has room.
   * `stored` is the device's queue as the send read it after it arrived: anything committed before
   * (on any instance, its wake-up perhaps still on its way) must have been sent already.
   */
  canTakeDirect(stored: Pick<DeviceQueue, 'envelopes' | 'lastSeq'>): boolean;
  /** Sends the envelope; `onAnswer` hears the device's first answer (or the socket's close). */
  sendDirect(envelope: NewEnvelope, onAnswer: (acked: boolean) => void): DirectHandle;
  readonly direct: Pick<
    DirectDeliveries,
    'writeStarted' | 'writeFinished' | 'afterDecided' | 'releaseWaiters'
  >;
  /**
   * Runs `callback` once the socket is caught up (no write for the device under way on this
   * instance, nor its hand-over, no read, everything it knows of sent, room in its window): now,
   * or when that comes, or when the socket closes. Returns what cancels the wait.
   */
  afterCaughtUp(callback: () => void): () => void;
  /**
   * Whether this instance's own work holds the socket back: a write for the device under way
   * here (and the reads that may follow it), not the device itself (a full window, which a slow
   * device may keep full). A wait for a write may outlast the window, since a write of the
   * envelope's own would commit after that one.
   */
  heldBackByWrites(): boolean;
  /** Whether an envelope that cannot go first now may once the socket is caught up. */
  waitingMayHelp(stored: Pick<DeviceQueue, 'envelopes' | 'lastSeq'>): boolean;
}

interface Attempt {
  readonly rows: readonly NewEnvelope[];
  readonly targets: readonly DirectTarget[];
  readonly handles: DirectHandle[];
  readonly acked: boolean[];
  readonly deadline: number;
  unacked: number;
  done: boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Deliver first, store only what is not acknowledged. When every device a send addresses has its
 * socket on this instance and is caught up, the envelopes go to the sockets at once; if all are
 * acknowledged within `windowMs` the send is accepted with no write at all (a device acknowledges
 * only once it has stored the message: docs/protocol.md). What is not acknowledged in time is
 * written, with the id the device already saw, and the send is accepted after that commit; an
 * acknowledgement that comes after the decision deletes the committed row. So "accepted" still
 * means durable: committed, or stored by the device.
 *
 * Order per device: decisions are taken in the order the envelopes went out (one FIFO of
 * attempts, all with the same window), and every other write for a device waits (`store`) until
 * what was delivered first to it is decided, so the queue's order is the socket's order.
 */
export class DeliverFirst {
  private readonly attempts: Attempt[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly targetOf: (accountId: string, deviceId: number) => DirectTarget | undefined,
    private readonly windowMs: number,
    private readonly write: (rows: readonly NewEnvelope[]) => Promise<void>,
    private readonly metrics: Pick<Metrics, 'directAcknowledged' | 'directStored'>,
    private readonly longestWriteWaitMs = QUERY_TIMEOUT_MS,
  ) {}

  /**
   * Delivers the rows first; undefined (nothing sent) unless every row's device can take one now.
   * `queueOf` gives each row's device queue as read by the send. The promise settles once every
   * row is acknowledged or committed (or its write failed).
   */
  deliver(
    rows: readonly NewEnvelope[],
    queueOf: (row: NewEnvelope) => DeviceQueue | undefined,
  ): Promise<void> | undefined {
    if (this.windowMs <= 0) return undefined;
    const targets: DirectTarget[] = [];
    for (const row of rows) {
      const target = this.targetOf(row.accountId, row.deviceId);
      const stored = queueOf(row);
      if (!target || !stored || !target.canTakeDirect(stored)) return undefined;
      targets.push(target);
    }
    return new Promise((resolve, reject) => {
      const attempt: Attempt = {
        rows,
        targets,
        handles: [],
        acked: rows.map(() => false),
        deadline: Date.now() + this.windowMs,
        unacked: rows.length,
        done: false,
        resolve,
        reject,
      };
      rows.forEach((row, index) => {
        const handle = (targets[index] as DirectTarget).sendDirect(row, (acked) =>
          this.answered(attempt, index, acked),
        );
        attempt.handles.push(handle);
      });
      this.attempts.push(attempt);
      this.timer ??= setTimeout(() => this.deadlineReached(), this.windowMs);
    });
  }

  /**
   * Makes rows durable: delivered first if their devices can take them now, or once their
   * sockets have caught up if that comes in time (`socketsCaughtUp`); otherwise written.
   */
  async makeDurable(
    rows: readonly NewEnvelope[],
    queueOf: (row: NewEnvelope) => DeviceQueue | undefined,
  ): Promise<void> {
    const delivered = this.deliver(rows, queueOf);
    if (delivered) return delivered;
    // The snapshot still holds after the wait: what another instance committed before the send
    // arrived is in it, and what this instance wrote since is known to the sockets.
    const retried = (await this.socketsCaughtUp(rows, queueOf))
      ? this.deliver(rows, queueOf)
      : undefined;
    return retried ?? this.store(rows);
  }

  /**
   * Whether `deliver` is worth trying again: true once the rows' sockets on this instance are
   * caught up, if that happens within the window, or, while only this instance's writes hold them
   * back (`heldBackByWrites`), within `longestWriteWaitMs`. Under load, one write made every send to the
   * device that arrived meanwhile a write of its own: a device with a write under way, or with
   * the read its NOTIFY started, cannot take an envelope first. So on while sends came faster
   * than commits and reads (at 4,000/s and a load of 6, a write under way was why 5,760 of 6,040
   * sends could not go first; in the soak at 12,000/s with a tenth of the recipients coming and
   * going, 97 % of the sends were written, until sends waited for reads too). Waiting costs a send
   * at most the window, or, for a write, no longer than its own write would take (it would commit
   * after that one); written, it would cost a row, its read and its deletion.
   */
  async socketsCaughtUp(
    rows: readonly NewEnvelope[],
    queueOf: (row: NewEnvelope) => DeviceQueue | undefined,
  ): Promise<boolean> {
    if (this.windowMs <= 0) return false;
    const behind = new Set<DirectTarget>();
    for (const row of rows) {
      const target = this.targetOf(row.accountId, row.deviceId);
      const stored = queueOf(row);
      if (!target || !stored) return false; // not delivered first whatever happens here
      if (target.waitingMayHelp(stored)) behind.add(target);
      else if (!target.canTakeDirect(stored)) return false; // its socket is closing
    }
    if (behind.size === 0) return false;
    return new Promise((resolve) => {
      const pending = new Set(behind);
      const cancels: (() => void)[] = [];
      const started = Date.now();
      const timedOut = (): void => {
        if (
          [...pending].every((target) => target.heldBackByWrites()) &&
          Date.now() - started < this.longestWriteWaitMs
        ) {
          timer = setTimeout(timedOut, this.windowMs);
          return;
        }
        for (const cancel of cancels) cancel();
        resolve(false);
      };
      let timer = setTimeout(timedOut, this.windowMs);
      for (const target of behind) {
        cancels.push(
          target.afterCaughtUp(() => {
            pending.delete(target);
            if (pending.size > 0) return;
            clearTimeout(timer);
            resolve(true);
          }),
        );
      }
    });
  }

  /**
   * Writes rows after everything delivered first to their devices on this instance is decided
   * (acknowledged, or handed to the writer before these), and keeps anything from being
   * delivered first to those devices until the write is done.
   */
  store(rows: readonly NewEnvelope[]): Promise<void> {
    const targets = this.localTargets(rows);
    for (const target of targets) target.direct.writeStarted();
    const written = new Promise<void>((resolve, reject) => {
      let waiting = targets.length + 1;
      const ready = (): void => {
        waiting -= 1;
        if (waiting === 0) this.write(rows).then(resolve, reject);
      };
      for (const target of targets) target.direct.afterDecided(ready);
      ready();
    });
    return written.finally(() => {
      for (const target of targets) target.direct.writeFinished();
    });
  }

  private localTargets(rows: readonly NewEnvelope[]): DirectTarget[] {
    const targets = new Set<DirectTarget>();
    for (const row of rows) {
      const target = this.targetOf(row.accountId, row.deviceId);
      if (target) targets.add(target);
    }
    return [...targets];
  }

  private answered(attempt: Attempt, index: number, acked: boolean): void {
    // A refusal (or a close) is decided at the deadline, with the attempts before it, in order.
    if (attempt.done || !acked || attempt.acked[index]) return;
    attempt.acked[index] = true;
    attempt.unacked -= 1;
    if (attempt.unacked > 0) return;
    attempt.done = true;
    this.metrics.directAcknowledged.inc(attempt.rows.length);
    attempt.resolve();
    this.forgetDecidedHead();
  }

  /**
   * Drops the decided attempts at the head of the queue now rather than at the next deadline:
   * each holds its envelopes (their contents, as bytes and as base64), which would otherwise
   * live through the window and be copied by a young-generation collection or two, then promoted.
   */
  private forgetDecidedHead(): void {
    while (this.attempts[0]?.done) this.attempts.shift();
  }

  /**
   * At a deadline: first lets the event loop read what has arrived (timers run before sockets are
   * read, so a busy relay would otherwise miss acknowledgements already waiting in its sockets).
   */
  private deadlineReached(): void {
    setImmediate(() => this.expire());
  }

  /** Decides every attempt past its deadline, oldest first, and waits for the next one. */
  private expire(): void {
    this.timer = undefined;
    const now = Date.now();
    while (this.attempts.length > 0) {
      const attempt = this.attempts[0] as Attempt;
      if (!attempt.done && attempt.deadline > now) break;
      this.attempts.shift();
      if (!attempt.done) this.storeUnacknowledged(attempt);
    }
    const next = this.attempts.find((attempt) => !attempt.done);
    if (next) {
      this.timer = setTimeout(() => this.deadlineReached(), Math.max(0, next.deadline - now));
    }
  }

  /**
   * Hands what was not acknowledged to the writer now, synchronously, before any store waiting
   * behind it is let go: nothing older is undecided on these sockets (attempts are decided in the
   * order they went out) and nothing else could have gone ahead of it (writes for a device wait
   * for what was delivered to it first).
   */
  private storeUnacknowledged(attempt: Attempt): void {
    attempt.done = true;
    const rows: NewEnvelope[] = [];
    const handles: DirectHandle[] = [];
    const targets = new Set<DirectTarget>();
    attempt.rows.forEach((row, index) => {
      if (attempt.acked[index]) return;
      rows.push(row);
      handles.push(attempt.handles[index] as DirectHandle);
      targets.add(attempt.targets[index] as DirectTarget);
    });
    for (const handle of handles) handle.store();
    for (const target of targets) target.direct.writeStarted();
    const written = this.write(rows);
    for (const target of attempt.targets) target.direct.releaseWaiters();
    this.metrics.directStored.inc(rows.length);
    written
      .then(attempt.resolve, (error: unknown) => {
        for (const handle of handles) handle.forget();
        attempt.reject(error);
      })
      .finally(() => {
        for (const target of targets) target.direct.writeFinished();
      });
  }
}
