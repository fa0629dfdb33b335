/**
 * One socket's bookkeeping for envelopes delivered first, before any write (see
 * services/deliver-first.ts): which request frames carry them, which are still undecided (neither
 * acknowledged nor handed to storage), and the stores waiting behind them.
 *
 * Per-device order is the point of the `undecided` count: a store for this device that starts
 * while an envelope delivered first is undecided waits (`afterDecided`) until that one is either
 * acknowledged (it never gets a row) or handed to the writer (its row comes first), so that the
 * queue's order is the order in which the envelopes went out on the socket.
 */
interface Entry {
  readonly requestId: number;
  readonly envelopeId: string;
  readonly sentAt: number;
  /** The device's answer so far: 2xx, another status (it keeps the envelope queued), or none. */
  answer: 'acked' | 'refused' | undefined;
  /** Handed to storage: its row will be committed, and its frame is already on the socket. */
  storing: boolean;
  readonly onAnswer: (acked: boolean) => void;
}

/** What the deliver-first path holds of an envelope it handed to a socket. */
export interface DirectHandle {
  /** Not acknowledged in time: its row is about to be written (call before submitting it). */
  store(): void;
  /** Its write failed: nothing will come back for it. */
  forget(): void;
}

/** An envelope delivered first that has since been committed: its frame is already out. */
export interface CommittedDirect {
  readonly requestId: number;
  readonly sentAt: number;
  readonly answer: 'acked' | 'refused' | undefined;
}

export class DirectDeliveries {
  /**
   * Entries not handed to storage, in the order their frames went out: those awaiting an answer
   * (at most a window of them) and those refused, until their deadline hands them to storage.
   * Usually answered in order, so the one an answer names is at the head. An array, not a Map
   * keyed by request id as until 2026-12-06: a long-lived Map that shrinks (each time its last
   * entry left) gets its new table allocated in the old generation, which at 4,000 messages/s
   * was most of what the relay promoted there (docs/benchmarks.md, item 28).
   */
  private sent: Entry[] = [];
  /** Entries handed to storage, until their committed row comes around: the rare path. */
  private readonly storingByRequest = new Map<number, Entry>();
  private readonly storingByEnvelope = new Map<string, Entry>();
  private undecided = 0;
  /** Entries whose frame awaits the device's answer. */
  private unanswered = 0;
  private waiters: (() => void)[] = [];
  private writes = 0;

  /** `onWritesDone` hears when the last write under way (see `writeStarted`) has finished. */
  constructor(private readonly onWritesDone: () => void = () => {}) {}

  /** Writes under way with envelopes for this device: nothing may be delivered first meanwhile. */
  get storesUnderWay(): number {
    return this.writes;
  }

  writeStarted(): void {
    this.writes += 1;
  }

  writeFinished(): void {
    this.writes -= 1;
    if (this.writes === 0) this.onWritesDone();
  }

  /**
   * Envelopes delivered first whose frames await the device's answer: what they take of the
   * socket's window. One already answered but handed to the writer (its acknowledgement came
   * after the window) stays tracked until its committed row comes around, but takes no room:
   * when it did, a window full of them kept the socket from reading those very rows, and the
   * device received nothing more until it reconnected (seen in the soak at 12,000/s).
   */
  get awaitingAnswer(): number {
    return this.unanswered;
  }

  /** When the oldest envelope still awaiting its answer went out (the slow-consumer check). */
  oldestUnansweredAt(): number | undefined {
    if (this.unanswered === 0) return undefined;
    let oldest: number | undefined;
    for (const entries of [this.storingByRequest.values(), this.sent]) {
      for (const entry of entries) {
        if (entry.answer !== undefined) continue;
        if (oldest === undefined || entry.sentAt < oldest) oldest = entry.sentAt;
        break; // each list is in the order the frames went out
      }
    }
    return oldest;
  }

  add(requestId: number, envelopeId: string, onAnswer: (acked: boolean) => void): DirectHandle {
    const entry: Entry = {
      requestId,
      envelopeId,
      sentAt: Date.now(),
      answer: undefined,
      storing: false,
      onAnswer,
    };
    this.sent.push(entry);
    this.undecided += 1;
    this.unanswered += 1;
    return {
      store: () => {
        if (entry.answer === 'acked' && !entry.storing) return; // acknowledged: nothing to store
        entry.storing = true;
        this.undecided -= 1;
        if (!this.dropSent(entry)) return; // the socket closed: nothing more comes for it
        this.storingByRequest.set(entry.requestId, entry);
        this.storingByEnvelope.set(entry.envelopeId, entry);
      },
      forget: () => this.remove(entry),
    };
  }

  /** The client's answer to request `requestId`; false if that was not an envelope sent first. */
  answer(requestId: number, acked: boolean): boolean {
    const entry =
      this.sent.find((sent) => sent.requestId === requestId) ??
      this.storingByRequest.get(requestId);
    if (!entry) return false;
    if (entry.answer !== undefined) return true; // a second answer to one request: ignored
    entry.answer = acked ? 'acked' : 'refused';
    this.unanswered -= 1;
    if (entry.storing) return true; // its commit finds the answer (see `committed`)
    if (acked) {
      // Durable on the device: no row, ever. Stores waiting behind it may go.
      this.dropSent(entry);
      this.undecided -= 1;
      this.releaseWaiters();
    }
    entry.onAnswer(acked);
    return true;
  }

  /** The socket closed: every unanswered envelope counts as not acknowledged. */
  closed(): void {
    for (const entry of this.sent) {
      if (entry.answer !== undefined) continue;
      entry.answer = 'refused';
      entry.onAnswer(false);
    }
    this.sent = [];
    this.storingByRequest.clear();
    this.storingByEnvelope.clear();
    this.unanswered = 0;
  }

  /**
   * A committed envelope (by id), if it was delivered first on this socket: it then needs no new
   * frame; the caller tracks it under the request id it went out with, or deletes its row at once
   * if the device acknowledged it meanwhile.
   */
  committed(envelopeId: string): CommittedDirect | undefined {
    const entry = this.storingByEnvelope.get(envelopeId);
    if (!entry) return undefined;
    this.remove(entry);
    return entry;
  }

  /** Runs `callback` once no envelope delivered first is undecided: now, or when that happens. */
  afterDecided(callback: () => void): void {
    if (this.undecided === 0) callback();
    else this.waiters.push(callback);
  }

  /** Lets waiting stores go, in the order they came, once nothing is undecided. */
  releaseWaiters(): void {
    if (this.undecided > 0 || this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Takes an entry out of `sent`: usually the head, answered in order. */
  private dropSent(entry: Entry): boolean {
    if (this.sent[0] === entry) {
      this.sent.shift();
      return true;
    }
    const index = this.sent.indexOf(entry);
    if (index < 0) return false;
    this.sent.splice(index, 1);
    return true;
  }

  /** Forgets an entry wherever it is (its write failed, or its committed row came around). */
  private remove(entry: Entry): void {
    const tracked = entry.storing
      ? this.storingByRequest.delete(entry.requestId) &&
        this.storingByEnvelope.delete(entry.envelopeId)
      : this.dropSent(entry);
    if (tracked && entry.answer === undefined) this.unanswered -= 1;
  }
}
