import pg from 'pg';
import type { Logger } from 'pino';
import { EVENTS_CHANNEL, type RelayEvent } from '../db/events.ts';
import { safeError } from '../logger.ts';

// The event format and the in-transaction notify live in the data layer (db/events.ts), so that
// repositories send events without importing a service.
export { EVENTS_CHANNEL, notifyIn, notifyQuery, type RelayEvent } from '../db/events.ts';

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
