import type { Envelope } from '@privcomm/wire';
import pg from 'pg';
import { TestSocket, type TestDevice } from './client.ts';
import type { FaultCluster } from './fault-cluster.ts';
import { sleep, type FaultRandom, type Figures } from './fault-schedule.ts';

/** A message's marker: its whole content, or what precedes the first `|` (padding follows). */
export const markerOf = (content: Buffer): string => {
  const end = content.indexOf(0x7c);
  return content.toString('utf8', 0, end === -1 ? content.length : end);
};

/**
 * Traffic for the fault suite, with a history a checker can judge (Jepsen-style): every send
 * attempted, every one the relay accepted (answered 200), every envelope delivered. Messages are
 * opaque markers `fault:<run>:<sender>:<n>` carried as ciphertext.
 */
export class DeliveryLedger {
  readonly attempted = new Set<string>();
  readonly accepted = new Set<string>();
  /** Marker → the distinct envelope ids that carried it (more than one: a sender's retry). */
  readonly delivered = new Map<string, Set<string>>();
  private readonly envelopeIds = new Set<string>();
  /** The same envelope (same id) delivered again: its acknowledgement was lost. */
  redelivered = 0;
  /** Markers in the order each receiver first saw them, per receiver and sender. */
  readonly arrivals = new Map<string, string[]>();
  /** Answers other than 200, by status (0: no answer, the connection failed). */
  readonly refusals = new Map<number, number>();
  /** Requests still unanswered after HANG_MS (given up on, counted as hangs). */
  hangs = 0;
  /** The longest any answer took, refusals included (ms). */
  slowestAnswerMs = 0;

  constructor(readonly run: string) {}

  marker(sender: number, n: number): string {
    return `fault:${this.run}:${sender}:${n}`;
  }

  refused(status: number): void {
    this.refusals.set(status, (this.refusals.get(status) ?? 0) + 1);
  }

  onEnvelope(receiver: string, envelope: Envelope): void {
    if (this.envelopeIds.has(envelope.id)) {
      this.redelivered += 1;
      return;
    }
    this.envelopeIds.add(envelope.id);
    const marker = markerOf(Buffer.from(envelope.content, 'base64'));
    const ids = this.delivered.get(marker) ?? new Set<string>();
    if (ids.size === 0) {
      const sender = marker.split(':')[2] ?? '?';
      const key = `${receiver}<${sender}`;
      this.arrivals.set(key, [...(this.arrivals.get(key) ?? []), marker]);
    }
    ids.add(envelope.id);
    this.delivered.set(marker, ids);
  }

  lost(): string[] {
    return [...this.accepted].filter((marker) => !this.delivered.has(marker));
  }

  /** Delivered but never sent by anyone: invented or corrupted by the relay. */
  phantoms(): string[] {
    return [...this.delivered.keys()].filter((marker) => !this.attempted.has(marker));
  }

  /** Senders whose messages a receiver first saw out of the order they were accepted in. */
  outOfOrder(): number {
    let count = 0;
    for (const markers of this.arrivals.values()) {
      const numbers = markers.map((marker) => Number(marker.split(':')[3]));
      for (let i = 1; i < numbers.length; i += 1) {
        if ((numbers[i] as number) < (numbers[i - 1] as number)) count += 1;
      }
    }
    return count;
  }

  figures(): Figures {
    return {
      sent: this.attempted.size,
      accepted: this.accepted.size,
      delivered: this.delivered.size,
      lost: this.lost().length,
      phantom: this.phantoms().length,
      redelivered: this.redelivered,
      retriedCopies: [...this.delivered.values()].filter((ids) => ids.size > 1).length,
      hangs: this.hangs,
      slowestAnswerSeconds: this.slowestAnswerMs / 1000,
      refusals: [...this.refusals].map(([status, n]) => `${status}:${n}`).join(',') || 'none',
    };
  }
}

/** An answer that has not come after this long is a hang (the relay's request timeout is 30 s). */
export const HANG_MS = 30_000;

const HUNG = Symbol('hung');

export const upRelays = (cluster: FaultCluster): number[] =>
  Array.from({ length: cluster.size }, (_, i) => i).filter((i) => cluster.isUp(i));

/**
 * Sends one marker until a relay accepts it, as a client with an outbox does: a failed
 * connection or a 5xx is retried (on any relay that is up), a 401 re-authenticates, a 429 waits.
 * A send may thus be stored twice (its first answer was lost): receivers de-duplicate.
 * Returns false if it never got through within `attempts`.
 */
export const sendUntilAccepted = async (
  device: TestDevice,
  recipient: TestDevice,
  marker: string,
  cluster: FaultCluster,
  random: FaultRandom,
  ledger: DeliveryLedger,
  attempts = 400,
): Promise<boolean> => {
  ledger.attempted.add(marker);
  for (let attempt = 0; attempt < attempts; attempt += 1) {
    const up = upRelays(cluster);
    if (up.length === 0) {
      await sleep(100);
      continue;
    }
    device.baseUrl = cluster.url(random.pick(up));
    let status: number;
    let retryAfter: string | null = null;
    const asked = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await Promise.race([
        device.send(recipient.accountId, [recipient.address()], marker),
        new Promise<typeof HUNG>((resolve) => (timer = setTimeout(() => resolve(HUNG), HANG_MS))),
      ]);
      if (answer === HUNG) {
        ledger.hangs += 1;
        status = 0;
      } else {
        status = answer.status;
        retryAfter = answer.headers.get('retry-after');
      }
    } catch {
      status = 0;
    } finally {
      clearTimeout(timer);
    }
    ledger.slowestAnswerMs = Math.max(ledger.slowestAnswerMs, Date.now() - asked);
    if (status === 200) {
      ledger.accepted.add(marker);
      return true;
    }
    ledger.refused(status);
    if (status === 401) {
      await device.authenticate().catch(() => undefined);
    } else if (status === 429) {
      await sleep(Number(retryAfter ?? '1') * 1000);
    } else if (status === 0 || status >= 500) {
      await sleep(50);
    } else {
      throw new Error(`send refused for good: ${status}`);
    }
  }
  return false;
};

/**
 * A receiving device that stays connected through faults: it connects to a random live relay,
 * acknowledges everything (as a client does once it stored the content), and when its socket
 * closes it logs in again and reconnects elsewhere.
 */
export class FaultReceiver {
  private stopped = false;
  private socket: TestSocket | undefined;
  private loop: Promise<void> | undefined;
  private offlineUntil = 0;
  connections = 0;

  constructor(
    readonly name: string,
    readonly device: TestDevice,
    private readonly cluster: FaultCluster,
    private readonly random: FaultRandom,
    private readonly ledger: DeliveryLedger,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const up = upRelays(this.cluster);
      if (up.length === 0) {
        await sleep(100);
        continue;
      }
      const index = this.random.pick(up);
      try {
        this.device.baseUrl = this.cluster.url(index);
        await this.device.authenticate();
        const socket = await TestSocket.connect(this.cluster.wsUrl(index), this.device);
        this.socket = socket;
        this.connections += 1;
        this.recordEnvelopes(socket);
        await socket.closed;
      } catch {
        // The relay died or refused meanwhile: try again, elsewhere.
      }
      this.socket = undefined;
      if (!this.stopped) await sleep(Math.max(100, this.offlineUntil - Date.now()));
    }
  }

  /**
   * The device goes offline for `ms` (its app closed, its network gone): what is sent to it
   * meanwhile queues up, and arrives as a backlog when it reconnects.
   */
  async goOffline(ms: number): Promise<void> {
    this.offlineUntil = Date.now() + ms;
    await this.socket?.close();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.socket?.close();
    await this.loop;
  }

  /**
   * Tells the ledger of every envelope the socket receives, from its login on. Those that came
   * in the same read as the login's answer were emitted (and acknowledged by TestSocket) before
   * `connect` resolved, so a listener added now would miss them: they are taken from what the
   * socket recorded, in the same turn as the listener is added, so that none is told twice.
   * (Until 2026-12-06 a busy receiver could read a backlog's first envelope with the login's
   * answer, and the ledger called it lost although the device had acknowledged it.)
   */
  private recordEnvelopes(socket: TestSocket): void {
    for (const envelope of socket.envelopes()) this.ledger.onEnvelope(this.name, envelope);
    socket.ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { verb?: string; body?: Envelope };
      if (frame.verb === 'envelope' && frame.body) this.ledger.onEnvelope(this.name, frame.body);
    });
  }

  /** Connects once more and reads the queue to its end (what is left after the faults). */
  async drain(): Promise<void> {
    const up = upRelays(this.cluster);
    const index = up[0];
    if (index === undefined) throw new Error('no relay is up');
    this.device.baseUrl = this.cluster.url(index);
    await this.device.authenticate();
    const socket = await TestSocket.connect(this.cluster.wsUrl(index), this.device);
    this.recordEnvelopes(socket);
    await socket.until(
      () => socket.requests.some((request) => request.verb === 'queue.empty'),
      60_000,
      'the end of the queue',
    );
    await socket.close();
  }
}

/** The markers of every envelope still queued, read straight from PostgreSQL. */
export const queuedMarkers = async (databaseUrl: string): Promise<string[]> => {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const result = await client.query<{ content: Buffer }>('SELECT content FROM envelopes');
    return result.rows.map((row) => markerOf(row.content));
  } finally {
    await client.end();
  }
};

/** How many envelopes are still queued, read straight from PostgreSQL (not through a relay). */
export const queuedEnvelopes = async (databaseUrl: string): Promise<number> => {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const result = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM envelopes');
    return result.rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
};
