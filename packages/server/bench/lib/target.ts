import type { Durability } from './relay-metrics.ts';

/** What the load generator needs from a messaging system: users, logins, sends and receipts. */
export interface Connection {
  /**
   * Sends `payload` to user `to`. Resolves when the server accepted it: for the relay, when the
   * envelope is committed (HTTP 200, or the socket's 200); for XMPP, which has no per-message
   * acceptance, once the stanza is written to the socket.
   */
  send(to: number, payload: Buffer): Promise<void>;
  /** Keeps an idle session alive (the relay closes sockets silent for 90 s). */
  keepAlive(): void;
  close(): Promise<void>;
}

export interface QueueTableStats {
  /** Rows queued for this run's accounts. */
  readonly rows: number;
  /** Dead rows in the whole table (pg_stat_user_tables). */
  readonly dead: number;
  /** The table with its indexes and TOAST, in bytes. */
  readonly bytes: number;
}

export interface Target {
  readonly name: string;
  /** Whether `send` resolving means the message is durable (shown in the table). */
  readonly acceptanceIsDurable: boolean;
  /** Makes users 0..count-1 exist (not measured). */
  prepare(count: number): Promise<void>;
  /** A full login of user `index`; `onMessage` gets each message's payload, acknowledged after. */
  connect(index: number, onMessage: (payload: Buffer) => void): Promise<Connection>;
  /** Messages still stored on the server (0 after a drain whose acknowledgements all landed). */
  storedCount(): Promise<number>;
  /** The queue table as PostgreSQL counts it (the soak watches it grow or plateau). */
  queueTable?(): Promise<QueueTableStats>;
  /** How the server made its sends durable so far (the relay's counters; relay-metrics.ts). */
  durability?(): Promise<Durability | undefined>;
  /** VACUUM of the queue tables: a stand-in for autovacuum where the cluster has it off. */
  vacuumQueue?(): Promise<void>;
  /** ANALYZE of the queue table: a stand-in for autovacuum's analyze while a queue grows. */
  analyzeQueue(): Promise<void>;
  close(): Promise<void>;
}

/** The payload header: which pair sent it and its number, so the receiver can time and count it. */
export const PAYLOAD_HEADER_BYTES = 8;

export const writeHeader = (payload: Buffer, pair: number, seq: number): void => {
  payload.writeUInt32BE(pair, 0);
  payload.writeUInt32BE(seq, 4);
};

export const readHeader = (payload: Buffer): { pair: number; seq: number } => ({
  pair: payload.readUInt32BE(0),
  seq: payload.readUInt32BE(4),
});

/**
 * A login tried again after a pause, as a client reconnects, up to 3 times in all, when
 * `transient` says the failure was the server's moment (a closed socket, a 503, a refused SASL
 * right after start) rather than a fault of the benchmark; `onRetry` counts it.
 */
export const withLoginRetries = async <T>(
  login: () => Promise<T>,
  transient: (message: string) => boolean,
  onRetry: () => void,
): Promise<T> => {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await login();
    } catch (error) {
      if (attempt >= 3 || !transient((error as Error).message)) throw error;
      onRetry();
      await new Promise((resolve) => setTimeout(resolve, 1_000 * attempt));
    }
  }
};
