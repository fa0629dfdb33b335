import { sql } from 'drizzle-orm';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Envelope } from '@privcomm/wire';
import type { Executor } from '../db/executor.ts';
import { safeError } from '../logger.ts';

/**
 * Events between relay instances, over PostgreSQL LISTEN/NOTIFY on one channel. They are only
 * wake-ups and instructions: the envelopes table stays the truth, so an event lost while the
 * listener reconnects costs latency, not messages (every local socket is re-checked on
 * reconnect).
 */
export const EVENTS_CHANNEL = 'privcomm_events';

export type RelayEvent =
  /** New envelopes are stored for a device. */
  | { t: 'queued'; a: string; d: number }
  /** An online-only envelope for a device; dropped if no instance holds its socket. */
  | { t: 'online'; a: string; d: number; e: Envelope }
  /** A socket authenticated for a device; older sockets of that device must close. */
  | { t: 'connected'; a: string; d: number; s: number }
  /** A device (or with d = 0, a whole account) was removed: close its sockets. */
  | { t: 'removed'; a: string; d: number }
  /** A provisioning message (base64 c) for address p; dropped if no instance holds that socket. */
  | { t: 'provision'; p: string; c: string };

export const notifyQuery = (event: RelayEvent): { text: string; values: unknown[] } => ({
  text: 'SELECT pg_notify($1, $2)',
  values: [EVENTS_CHANNEL, JSON.stringify(event)],
});

/** Sends an event from inside a transaction: PostgreSQL delivers it only if the commit succeeds. */
export const notifyIn = async (tx: Executor, event: RelayEvent): Promise<void> => {
  await tx.execute(sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${JSON.stringify(event)})`);
};

const parseEvent = (payload: string | undefined): RelayEvent | undefined => {
  try {
    const event = JSON.parse(payload ?? '') as RelayEvent;
    return typeof event === 'object' && event !== null && typeof event.t === 'string'
      ? event
      : undefined;
  } catch {
    return undefined;
  }
};

export interface EventHandler {
  onEvent(event: RelayEvent): void;
  /** Called after the listener (re)connects: events may have been missed meanwhile. */
  onResync(): void;
}

/** Holds one dedicated LISTEN connection and reconnects it with backoff when it drops. */
export class EventListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private retryMs = 100;
  private retryTimer: NodeJS.Timeout | undefined;
  private everConnected = false;

  constructor(
    private readonly url: string,
    private readonly handler: EventHandler,
    private readonly log: Logger,
  ) {}

  /** Resolves once listening; later drops reconnect in the background. */
  async start(): Promise<void> {
    await this.connect();
  }

  get listening(): boolean {
    return this.client !== undefined;
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      application_name: 'privcomm-listen',
    });
    client.on('notification', (message) => {
      const event = parseEvent(message.payload);
      if (event) this.handler.onEvent(event);
    });
    const dropped = (error?: Error): void => {
      if (this.client !== client) return;
      this.client = undefined;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (!this.stopped) {
        this.log.warn(
          { err: error === undefined ? undefined : safeError(error) },
          'event listener lost its connection; reconnecting',
        );
        this.scheduleReconnect();
      }
    };
    client.on('error', dropped);
    client.on('end', () => dropped());
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.client = client;
    this.retryMs = 100;
    if (this.everConnected) this.handler.onResync();
    this.everConnected = true;
  }

  private scheduleReconnect(): void {
    this.retryTimer = setTimeout(() => {
      this.connect().catch(() => {
        this.retryMs = Math.min(this.retryMs * 2, 5_000);
        if (!this.stopped) this.scheduleReconnect();
      });
    }, this.retryMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
