/**
 * The load generator: a process of its own, so that its CPU is never counted as the server's.
 * It runs one scenario against one system, described by the JSON job in argv[2], and writes
 * newline-delimited JSON to stdout: {"mark": name} at the edges of each measured phase (the
 * orchestrator reads the servers' CPU and memory there) and one {"result": …} at the end.
 */
import { randomBytes } from 'node:crypto';
import { Samples, type Percentiles } from './lib/stats.ts';
import { RelayTarget, type LoginKind, type SendTransport } from './lib/relay-target.ts';
import { describeDurability } from './lib/relay-metrics.ts';
import {
  PAYLOAD_HEADER_BYTES,
  readHeader,
  writeHeader,
  type Connection,
  type Target,
} from './lib/target.ts';
import { XmppTarget } from './lib/xmpp-target.ts';

export type Job =
  | { scenario: 'online'; pairs: number; inFlight: number; seconds: number; bytes: number }
  | { scenario: 'fixed-rate'; pairs: number; rate: number; seconds: number; bytes: number }
  | { scenario: 'offline'; pairs: number; messages: number; bytes: number }
  | { scenario: 'idle'; sessions: number }
  | {
      scenario: 'soak';
      pairs: number;
      rate: number;
      seconds: number;
      sampleSeconds: number;
      bytes: number;
    };

export interface JobTarget {
  system: 'privcomm' | 'ejabberd';
  /** privcomm: the relay's base URL; ejabberd: unused. */
  url?: string;
  /** ejabberd: its c2s port. */
  port?: number;
  /** The system's database, to count what it still stores. */
  databaseUrl: string;
  transport?: SendTransport;
  login?: LoginKind;
  /** privcomm: the file of accounts created for the run (relay-accounts.ts). */
  accountsFile?: string;
  /** privcomm: the relay's MAX_SENDS_IN_FLIGHT (sends awaiting their commit on one socket). */
  maxSendsInFlight?: number;
}

const mark = (name: string): void => {
  process.stdout.write(`${JSON.stringify({ mark: name })}\n`);
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `task` for 0..count-1, at most `limit` at a time. */
const inParallel = async (
  count: number,
  limit: number,
  task: (index: number) => Promise<void>,
): Promise<void> => {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) {
        const index = next;
        next += 1;
        await task(index);
      }
    }),
  );
};

/**
 * Book-keeping for messages between pairs: which are on their way, when each left, and what
 * arrived (twice, or never). Sender of pair p is user 2p, its recipient user 2p+1.
 */
class Ledger {
  private readonly sentAt: Map<number, number>[];
  /** Per pair, the messages accepted by the server and not (yet) received. */
  private readonly acceptedUnarrived: Set<number>[];
  /** Random filler, made once: a payload is a copy with its header written in. */
  private readonly filler: Buffer;
  private readonly nextSeq: Uint32Array;
  readonly latency = new Samples();
  readonly acceptance = new Samples();
  received = 0;
  duplicates = 0;
  failures = 0;
  /**
   * Sends whose acceptance has not come back yet. Delivered first, a message arrives before its
   * sender hears it was accepted: closing when everything arrived cut those answers off, and
   * they were counted as failed sends.
   */
  awaitingAcceptance = 0;
  /** Only messages received while this is set are timed and counted as `receivedInWindow`. */
  measuring = false;
  receivedInWindow = 0;

  constructor(
    pairs: number,
    private readonly bytes: number,
  ) {
    this.sentAt = Array.from({ length: pairs }, () => new Map());
    this.acceptedUnarrived = Array.from({ length: pairs }, () => new Set());
    this.filler = randomBytes(bytes);
    this.nextSeq = new Uint32Array(pairs);
  }

  /**
   * Counts a send as awaiting its acceptance until it settles (see `settle`), and remembers that
   * pair p's message `seq` was accepted: only those count as lost if they never arrive.
   */
  tracked<T>(send: Promise<T>, pair: number, seq: number): Promise<T> {
    this.awaitingAcceptance += 1;
    return send
      .then((value) => {
        if (this.sentAt[pair]?.has(seq)) this.acceptedUnarrived[pair]?.add(seq);
        return value;
      })
      .finally(() => {
        this.awaitingAcceptance -= 1;
      });
  }

  /** Messages the server accepted that never arrived. */
  lost(): number {
    return this.acceptedUnarrived.reduce((sum, set) => sum + set.size, 0);
  }

  /** Messages sent that were neither accepted nor received when the run ended (a backlog). */
  unaccepted(): number {
    return this.outstanding() - this.lost();
  }

  /** A new payload for pair p: the header and random filler (the relay only ever sees bytes). */
  payload(pair: number): { payload: Buffer; seq: number } {
    const seq = this.nextSeq[pair] as number;
    this.nextSeq[pair] = seq + 1;
    const payload = Buffer.from(this.filler);
    writeHeader(payload, pair, seq);
    this.sentAt[pair]?.set(seq, performance.now());
    return { payload, seq };
  }

  /** Returns whether this was the first arrival of a message that was sent. */
  onReceived(payload: Buffer): { pair: number; seq: number } | undefined {
    if (payload.length < PAYLOAD_HEADER_BYTES) return undefined;
    const { pair, seq } = readHeader(payload);
    const sent = this.sentAt[pair]?.get(seq);
    if (sent === undefined) {
      this.duplicates += 1;
      return undefined;
    }
    this.sentAt[pair]?.delete(seq);
    this.acceptedUnarrived[pair]?.delete(seq);
    this.received += 1;
    if (this.measuring) {
      this.receivedInWindow += 1;
      this.latency.push(performance.now() - sent);
    }
    return { pair, seq };
  }

  /** The numbers of pair p's messages sent and not (yet) received. */
  outstandingOf(pair: number): number[] {
    return [...(this.sentAt[pair]?.keys() ?? [])];
  }

  /** Messages sent and not (yet) received. */
  outstanding(): number {
    return this.sentAt.reduce((sum, map) => sum + map.size, 0);
  }
}

/** What one run reports (fields by scenario; the orchestrator adds CPU and memory). */
export interface LoadResult {
  rate?: number;
  messages?: number;
  seconds?: number;
  latency?: Percentiles;
  acceptance?: Percentiles;
  /** Accepted by the server (for XMPP: written to it) and never received. */
  lost?: number;
  /** Sent but neither accepted nor received when the run ended: the run's backlog, not lost. */
  unaccepted?: number;
  duplicates?: number;
  failures?: number;
  stored?: number;
  /** Fixed rate: whether delivery kept up with the offered rate. */
  held?: boolean;
  /** Offline: messages stored per second, then drained per second, and each recipient's drain. */
  storeRate?: number;
  drainRate?: number;
  drainPerRecipient?: Percentiles;
  /** Offline: messages sent but never stored (the server dropped them). */
  notStored?: number;
  /** Soak: one entry per sample period. */
  samples?: SoakSample[];
}

/** One period of the soak. */
export interface SoakSample {
  /** Seconds since the soak started, at the end of the period. */
  readonly at: number;
  /** Messages received in the period (by recipients that were online when they were sent). */
  readonly received: number;
  readonly p50?: number;
  readonly p99?: number;
  /** Rows queued for the run's accounts, dead rows in the table, its size in MiB. */
  readonly queueRows?: number;
  readonly deadRows?: number;
  readonly tableMiB?: number;
  /** Whether the stand-in for autovacuum ran after this sample. */
  readonly vacuumed?: boolean;
  /** How the relay made the period's sends durable (relay-metrics.ts describeDurability). */
  readonly durability?: string;
  /**
   * The longest catch-up of a recipient that came back in the period: from its login to the
   * arrival of the last message sent while it was away or logging in (its backlog). Messages
   * sent to it after its login arrive behind that backlog and count in p99.
   */
  readonly catchUpMs?: number;
  /**
   * Recipients that came back at the start of the period and had not caught up by its end: how
   * many, and the longest time since their login (a lower bound of their catch-up).
   */
  readonly catchingUp?: { readonly count: number; readonly longestMs: number };
}

const connectPairs = async (
  target: Target,
  pairs: number,
  ledger: Ledger,
  onArrival: (arrived: { pair: number; seq: number }) => void = () => {},
): Promise<Connection[]> => {
  await target.prepare(pairs * 2);
  const connections: Connection[] = [];
  await inParallel(pairs * 2, 50, async (user) => {
    connections[user] = await target.connect(user, (payload) => {
      const arrived = ledger.onReceived(payload);
      if (arrived) onArrival(arrived);
    });
  });
  return connections;
};

/** Waits until nothing is outstanding or awaiting its acceptance, or `ms` passed. */
const settle = async (ledger: Ledger, ms: number): Promise<void> => {
  const deadline = Date.now() + ms;
  while ((ledger.outstanding() > 0 || ledger.awaitingAcceptance > 0) && Date.now() < deadline) {
    await sleep(20);
  }
};

const closeAll = async (connections: readonly (Connection | undefined)[]): Promise<void> => {
  await Promise.all(connections.map((connection) => connection?.close()));
};

/** Scenario 1: every pair keeps `inFlight` messages on their way (sent, not yet received and accepted). */
const online = async (
  target: Target,
  job: Extract<Job, { scenario: 'online' }>,
): Promise<LoadResult> => {
  let running = true;
  const pending = new Map<string, number>(); // `${pair}.${seq}` → parts left (acceptance, arrival)
  const finish = (key: string, restart: () => void): void => {
    const left = (pending.get(key) ?? 0) - 1;
    if (left > 0) return void pending.set(key, left);
    pending.delete(key);
    if (running) restart();
  };
  const ledger = new Ledger(job.pairs, job.bytes);
  let connections: Connection[] = [];
  const start = (pair: number): void => {
    const { payload, seq } = ledger.payload(pair);
    const key = `${pair}.${seq}`;
    pending.set(key, 2);
    const sentAt = performance.now();
    ledger
      .tracked((connections[pair * 2] as Connection).send(pair * 2 + 1, payload), pair, seq)
      .then(
        () => {
          if (ledger.measuring) ledger.acceptance.push(performance.now() - sentAt);
          finish(key, () => start(pair));
        },
        () => {
          ledger.failures += 1;
          finish(key, () => start(pair));
        },
      );
  };
  connections = await connectPairs(target, job.pairs, ledger, ({ pair, seq }) =>
    finish(`${pair}.${seq}`, () => start(pair)),
  );
  for (let pair = 0; pair < job.pairs; pair += 1) {
    for (let i = 0; i < job.inFlight; i += 1) start(pair);
  }
  await sleep(2_000); // warm-up: connections, JIT, plans
  ledger.measuring = true;
  mark('start');
  const t0 = performance.now();
  await sleep(job.seconds * 1000);
  const seconds = (performance.now() - t0) / 1000;
  mark('end');
  ledger.measuring = false;
  running = false;
  await settle(ledger, 15_000);
  await closeAll(connections);
  return {
    rate: ledger.receivedInWindow / seconds,
    messages: ledger.receivedInWindow,
    seconds,
    latency: ledger.latency.percentiles(),
    acceptance: target.acceptanceIsDurable ? ledger.acceptance.percentiles() : undefined,
    lost: ledger.lost(),
    unaccepted: ledger.unaccepted(),
    duplicates: ledger.duplicates,
    failures: ledger.failures,
  };
};

/** Scenario 2: a fixed total rate, spread over the pairs in turn, with no cap on messages in flight. */
const fixedRate = async (
  target: Target,
  job: Extract<Job, { scenario: 'fixed-rate' }>,
): Promise<LoadResult> => {
  const ledger = new Ledger(job.pairs, job.bytes);
  const connections = await connectPairs(target, job.pairs, ledger);
  let sent = 0;
  let sentInWindow = 0;
  let pair = 0;
  const sendOne = (): void => {
    const { payload, seq } = ledger.payload(pair);
    const from = connections[pair * 2] as Connection;
    const to = pair * 2 + 1;
    const sentAt = performance.now();
    const measured = ledger.measuring;
    ledger.tracked(from.send(to, payload), pair, seq).then(
      () => {
        if (measured) ledger.acceptance.push(performance.now() - sentAt);
      },
      () => {
        ledger.failures += 1;
      },
    );
    pair = (pair + 1) % job.pairs;
  };
  const pace = async (ms: number): Promise<void> => {
    const t0 = performance.now();
    const base = sent;
    for (;;) {
      const elapsed = performance.now() - t0;
      if (elapsed >= ms) return;
      const due = Math.floor((elapsed / 1000) * job.rate) - (sent - base);
      for (let i = 0; i < due; i += 1) {
        sendOne();
        sent += 1;
        if (ledger.measuring) sentInWindow += 1;
      }
      await sleep(1);
    }
  };
  await pace(1_000); // warm-up
  ledger.measuring = true;
  mark('start');
  const t0 = performance.now();
  await pace(job.seconds * 1000);
  const seconds = (performance.now() - t0) / 1000;
  mark('end');
  ledger.measuring = false;
  // What arrives after the window (the backlog) is still counted as received, not as lost.
  await settle(ledger, 20_000);
  await closeAll(connections);
  return {
    rate: ledger.receivedInWindow / seconds,
    messages: sentInWindow,
    seconds,
    latency: ledger.latency.percentiles(),
    acceptance: target.acceptanceIsDurable ? ledger.acceptance.percentiles() : undefined,
    lost: ledger.lost(),
    unaccepted: ledger.unaccepted(),
    duplicates: ledger.duplicates,
    failures: ledger.failures,
    held: ledger.receivedInWindow >= 0.97 * sentInWindow,
  };
};

/**
 * Autovacuum is off on this machine's cluster, and the benchmark's VACUUM ANALYZE between
 * scenarios leaves the queue tables analysed empty: a plan made for an empty table reads it whole.
 * ejabberd counts a user's stored messages for every message it stores (its offline cap), so its
 * 200 × 500 store scanned the whole spool each time (15 minutes at a load of 15). While a queue
 * fills, this stands in for autovacuum's analyze (at 10 % growth there; here whenever the rows
 * doubled), for both systems alike. Returns a function that stops it.
 */
const analyzeWhileGrowing = (target: Target): (() => Promise<void>) => {
  let stopped = false;
  const loop = (async () => {
    let analyzedAt = 0;
    while (!stopped) {
      await sleep(500);
      const rows = await target.storedCount();
      if (rows < 2 * analyzedAt + 1_000) continue;
      await target.analyzeQueue();
      analyzedAt = rows;
    }
  })();
  return async () => {
    stopped = true;
    await loop;
  };
};

/** Scenario 3: senders fill offline recipients' queues, then the recipients connect and drain. */
const offline = async (
  target: Target,
  job: Extract<Job, { scenario: 'offline' }>,
): Promise<LoadResult> => {
  const ledger = new Ledger(job.pairs, job.bytes);
  await target.prepare(job.pairs * 2);
  const senders: Connection[] = [];
  await inParallel(job.pairs, 50, async (pair) => {
    senders[pair] = await target.connect(pair * 2, () => {});
  });
  const total = job.pairs * job.messages;
  const stopAnalyzing = analyzeWhileGrowing(target);
  mark('store.start');
  const storeStart = performance.now();
  await Promise.all(
    senders.map(async (sender, pair) => {
      // Four in flight per sender, as in the online scenario.
      let left = job.messages;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (left > 0) {
            left -= 1;
            await sender.send(pair * 2 + 1, ledger.payload(pair).payload).catch(() => {
              ledger.failures += 1;
            });
          }
        }),
      );
    }),
  );
  // XMPP has no acceptance: the store is done when the rows are there. A server that drops
  // messages (ejabberd discards queued SQL requests when its pool is overloaded) never gets
  // there: stop when the count has not moved for 10 s, and report what is missing as lost.
  let stored = await target.storedCount();
  let storeEnd = performance.now();
  for (let still = 0; stored < total - ledger.failures && still < 10_000;) {
    await sleep(20);
    const now = await target.storedCount();
    if (now === stored) still += 20;
    else [stored, still, storeEnd] = [now, 0, performance.now()];
  }
  const storeSeconds = (storeEnd - storeStart) / 1000;
  const notStored = Math.max(0, total - ledger.failures - stored);
  mark('store.end');
  await stopAnalyzing();
  const perRecipient = new Samples();
  const counts = new Uint32Array(job.pairs);
  ledger.measuring = true;
  mark('drain.start');
  const drainStart = performance.now();
  const recipients: Connection[] = [];
  let done = 0;
  let lastArrival = drainStart;
  await inParallel(job.pairs, 50, async (pair) => {
    recipients[pair] = await target.connect(pair * 2 + 1, (payload) => {
      const arrived = ledger.onReceived(payload);
      if (!arrived) return;
      lastArrival = performance.now();
      counts[arrived.pair] = (counts[arrived.pair] as number) + 1;
      if (counts[arrived.pair] === job.messages) {
        perRecipient.push(performance.now() - drainStart);
        done += 1;
      }
    });
  });
  // Recipients whose messages were not stored never finish: wait for the rest, then until no
  // message has arrived for 10 s.
  const deadline = Date.now() + 300_000;
  let seen = ledger.received;
  let quietSince = Date.now();
  while (done < job.pairs && Date.now() < deadline) {
    await sleep(10);
    if (ledger.received !== seen) [seen, quietSince] = [ledger.received, Date.now()];
    else if (notStored > 0 && Date.now() - quietSince > 10_000) break;
  }
  // Until the last arrival, not the end of a quiet wait for messages that were never stored.
  const drainSeconds = (lastArrival - drainStart) / 1000;
  mark('drain.end');
  ledger.measuring = false;
  // Acknowledged messages must leave the store: wait for the deletions to land.
  stored = await target.storedCount();
  for (let waited = 0; stored > 0 && waited < 10_000; waited += 100) {
    await sleep(100);
    stored = await target.storedCount();
  }
  await closeAll([...senders, ...recipients]);
  return {
    messages: total,
    storeRate: (total - notStored) / storeSeconds,
    notStored,
    drainRate: ledger.receivedInWindow / drainSeconds,
    drainPerRecipient: perRecipient.percentiles(),
    lost: ledger.outstanding(),
    duplicates: ledger.duplicates,
    failures: ledger.failures,
    stored,
  };
};

/**
 * Dead rows after which the soak vacuums the queue (migration 0001 sets autovacuum's threshold
 * for the envelopes table to 5,000): a stand-in for autovacuum on a cluster that has it off.
 */
const SOAK_VACUUM_DEAD_ROWS = 5_000;

/**
 * Scenario 6: a fixed rate for a long time while recipients go offline and come back: each
 * period a tenth of the recipients log out and those out since the last period log in again
 * (their queue drains). Sampled every period: latency of messages to online recipients, the
 * queue table's rows, dead rows and size.
 */
const soak = async (
  target: Target,
  job: Extract<Job, { scenario: 'soak' }>,
): Promise<LoadResult> => {
  const ledger = new Ledger(job.pairs, job.bytes);
  const offline = new Set<number>();
  /** Recipients logging in again: until their socket is open, messages to them wait too. */
  const returning = new Set<number>();
  let period = new Samples();
  let receivedInPeriod = 0;
  const untimed = new Set<string>(); // `${pair}.${seq}` sent while the recipient was offline
  const untimedOf = new Map<number, number>(); // how many of those each pair has
  const returnedAt = new Map<number, number>(); // pairs whose backlog has not all arrived yet
  let catchUpMs: number | undefined; // the period's longest
  const addUntimed = (p: number, seq: number): void => {
    const key = `${p}.${seq}`;
    if (untimed.has(key)) return; // still on its way from an earlier absence
    untimed.add(key);
    untimedOf.set(p, (untimedOf.get(p) ?? 0) + 1);
  };
  /** A message off the books: arrived, or its send failed (it may never arrive). */
  const settleUntimed = (p: number, seq: number): boolean => {
    if (!untimed.delete(`${p}.${seq}`)) return false;
    untimedOf.set(p, (untimedOf.get(p) ?? 1) - 1);
    caughtUp(p);
    return true;
  };
  const caughtUp = (p: number): void => {
    const since = returnedAt.get(p);
    if (since === undefined || (untimedOf.get(p) ?? 0) > 0 || returning.has(p)) return;
    returnedAt.delete(p);
    catchUpMs = Math.max(catchUpMs ?? 0, performance.now() - since);
  };
  const onArrival = ({ pair, seq }: { pair: number; seq: number }): void => {
    receivedInPeriod += 1;
    if (settleUntimed(pair, seq)) return;
    const latency = ledger.latency.last();
    if (latency !== undefined) period.push(latency);
  };
  const connections = await connectPairs(target, job.pairs, ledger, onArrival);
  const handler = (payload: Buffer): void => {
    const arrived = ledger.onReceived(payload);
    if (arrived) onArrival(arrived);
  };
  ledger.measuring = true;
  let pair = 0;
  let sent = 0;
  const sendOne = (): void => {
    const { payload, seq } = ledger.payload(pair);
    const to = pair;
    if (offline.has(to) || returning.has(to)) addUntimed(to, seq);
    ledger
      .tracked((connections[to * 2] as Connection).send(to * 2 + 1, payload), to, seq)
      .catch(() => {
        ledger.failures += 1;
        settleUntimed(to, seq);
      });
    pair = (pair + 1) % job.pairs;
  };
  const samples: SoakSample[] = [];
  let vacuuming = false;
  let durableSoFar = await target.durability?.();
  type PeriodSample = Pick<
    SoakSample,
    'at' | 'received' | 'p50' | 'p99' | 'catchUpMs' | 'catchingUp'
  >;
  /** One period's readings, after the previous period's (each reads against the last counters). */
  const readPeriod = async (sample: PeriodSample, last: boolean): Promise<void> => {
    const [stats, durable] = await Promise.all([
      target.queueTable?.().catch(() => undefined),
      target.durability?.(),
    ]);
    const vacuum = !last && stats !== undefined && stats.dead > SOAK_VACUUM_DEAD_ROWS && !vacuuming;
    samples.push({
      ...sample,
      queueRows: stats?.rows,
      deadRows: stats?.dead,
      tableMiB: stats === undefined ? undefined : stats.bytes / 2 ** 20,
      vacuumed: vacuum,
      durability: describeDurability(durableSoFar, durable),
    });
    durableSoFar = durable;
    if (!vacuum) return;
    vacuuming = true;
    void target
      .vacuumQueue?.()
      .catch(() => undefined)
      .finally(() => {
        vacuuming = false;
      });
  };
  let reading = Promise.resolve();
  const sampleQueue = (sample: PeriodSample, last = false): Promise<void> => {
    const read = reading.then(() => readPeriod(sample, last));
    reading = read.catch(() => undefined);
    return read;
  };
  /** Recipients that came back and have not caught up: how many, and the longest wait so far. */
  const stillCatchingUp = (): SoakSample['catchingUp'] => {
    if (returnedAt.size === 0) return undefined;
    const now = performance.now();
    const longestMs = Math.max(...[...returnedAt.values()].map((since) => now - since));
    return { count: returnedAt.size, longestMs };
  };
  const t0 = performance.now();
  let nextSample = job.sampleSeconds * 1000;
  let rotation = 0;
  mark('start');
  for (;;) {
    const elapsed = performance.now() - t0;
    if (elapsed >= job.seconds * 1000) break;
    const due = Math.floor((elapsed / 1000) * job.rate) - sent;
    for (let i = 0; i < due; i += 1, sent += 1) sendOne();
    if (elapsed >= nextSample) {
      nextSample += job.sampleSeconds * 1000;
      const latency = period.percentiles();
      const sample = {
        at: elapsed / 1000,
        received: receivedInPeriod,
        catchUpMs,
        catchingUp: stillCatchingUp(),
        ...latency,
      };
      period = new Samples();
      receivedInPeriod = 0;
      catchUpMs = undefined;
      // The table is read (and vacuumed) beside the sending, never in its way: a pause here
      // would come back as a burst.
      void sampleQueue(sample);
      // Those out since the last period come back; the next tenth goes.
      const back = [...offline];
      offline.clear();
      const size = Math.max(1, Math.floor(job.pairs / 10));
      for (let i = 0; i < size; i += 1) offline.add((rotation + i) % job.pairs);
      rotation = (rotation + size) % job.pairs;
      for (const p of offline) {
        // Going again before catching up: reported as still catching up in the sample above.
        returnedAt.delete(p);
        // What is on its way to them now waits for their return: not the online path's latency.
        for (const seq of ledger.outstandingOf(p)) addUntimed(p, seq);
        void connections[p * 2 + 1]?.close();
      }
      for (const p of back) {
        returning.add(p);
        returnedAt.set(p, performance.now());
      }
      void Promise.all(
        back.map(async (p) => {
          connections[p * 2 + 1] = await target.connect(p * 2 + 1, handler);
          returning.delete(p);
          caughtUp(p);
        }),
      ).catch(() => {
        ledger.failures += 1;
      });
    }
    await sleep(1);
  }
  const seconds = (performance.now() - t0) / 1000;
  mark('end');
  ledger.measuring = false;
  // The period that ends with the soak is sampled too: it was dropped (a 120 s soak reported
  // 90 s).
  await sampleQueue(
    {
      at: seconds,
      received: receivedInPeriod,
      catchUpMs,
      catchingUp: stillCatchingUp(),
      ...period.percentiles(),
    },
    true,
  );
  await Promise.all(
    [...offline].map(async (p) => {
      connections[p * 2 + 1] = await target.connect(p * 2 + 1, handler);
    }),
  );
  await settle(ledger, 30_000);
  await closeAll(connections);
  return {
    rate: ledger.received / seconds,
    messages: sent,
    seconds,
    lost: ledger.lost(),
    unaccepted: ledger.unaccepted(),
    duplicates: ledger.duplicates,
    failures: ledger.failures,
    samples,
  };
};

/** Scenario 4: many logged-in sessions doing nothing; the orchestrator reads the server's memory. */
const idle = async (
  target: Target,
  job: Extract<Job, { scenario: 'idle' }>,
): Promise<LoadResult> => {
  await target.prepare(job.sessions);
  const connections: Connection[] = [];
  // Logging thousands in can take longer than the relay's idle timeout (90 s): keep them alive.
  const keepAlive = setInterval(() => {
    for (const connection of connections) connection?.keepAlive();
  }, 20_000);
  mark('login.start');
  const t0 = performance.now();
  await inParallel(job.sessions, 100, async (user) => {
    connections[user] = await target.connect(user, () => {});
  });
  const seconds = (performance.now() - t0) / 1000;
  mark('login.end');
  await sleep(3_000);
  clearInterval(keepAlive);
  mark('idle');
  await inParallel(connections.length, 500, async (index) => connections[index]?.close());
  return { rate: job.sessions / seconds, seconds, messages: job.sessions };
};

const main = async (): Promise<void> => {
  const { job, target: spec } = JSON.parse(process.argv[2] ?? '{}') as {
    job: Job;
    target: JobTarget;
  };
  const target: Target =
    spec.system === 'privcomm'
      ? new RelayTarget(
          spec.url as string,
          spec.databaseUrl,
          spec.transport ?? 'http',
          spec.login ?? 'http',
          spec.accountsFile as string,
          spec.maxSendsInFlight as number,
        )
      : new XmppTarget(spec.port as number, spec.databaseUrl);
  try {
    const result =
      job.scenario === 'online'
        ? await online(target, job)
        : job.scenario === 'fixed-rate'
          ? await fixedRate(target, job)
          : job.scenario === 'offline'
            ? await offline(target, job)
            : job.scenario === 'soak'
              ? await soak(target, job)
              : await idle(target, job);
    const retries = (target as { loginRetries?: number }).loginRetries ?? 0;
    if (retries > 0) process.stderr.write(`load generator: ${retries} logins tried again\n`);
    process.stdout.write(`${JSON.stringify({ result })}\n`);
  } finally {
    await target.close();
  }
};

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`load generator failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
