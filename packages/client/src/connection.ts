import type { Envelope } from '@privcomm/wire';
import { ClientError } from './errors.ts';
import type { SocketLike, Transport } from './transport.ts';

const PING_INTERVAL_MS = 30_000;

export interface ConnectionHandlers {
  /** Handles one envelope; resolve with the status to answer (2xx deletes it on the relay). */
  onEnvelope(envelope: Envelope): Promise<number>;
  onQueueEmpty(): void;
  onClose(code: number, reason: string): void;
}

/**
 * One authenticated message socket. Envelopes are handled one at a time, in the order the relay
 * sent them, and each is answered only after its handler finished (stored durably): the relay
 * deletes an envelope only on that answer.
 */
export class RelayConnection {
  private nextId = 1;
  private readonly pending = new Map<number, (status: number) => void>();
  private queue: Promise<void> = Promise.resolve();
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  private constructor(
    private readonly socket: SocketLike,
    private readonly handlers: ConnectionHandlers,
  ) {}

  static open(
    transport: Transport,
    token: string,
    handlers: ConnectionHandlers,
  ): Promise<RelayConnection> {
    const url = `${transport.relayUrl.replace(/^http/, 'ws')}/v1/websocket`;
    return new Promise((resolve, reject) => {
      let socket: SocketLike;
      try {
        socket = transport.openSocket(url);
      } catch (error) {
        reject(
          new ClientError('RELAY_UNREACHABLE', `cannot open ${url}: ${(error as Error).message}`),
        );
        return;
      }
      const connection = new RelayConnection(socket, handlers);
      let settled = false;
      socket.onerror = () => {
        if (!settled) {
          settled = true;
          reject(new ClientError('RELAY_UNREACHABLE', `cannot connect to ${url}`));
        }
      };
      socket.onclose = (event) => {
        connection.onClosed(event.code, event.reason);
        if (!settled) {
          settled = true;
          const code = event.code === 4401 ? 'RELAY_REFUSED' : 'RELAY_UNREACHABLE';
          reject(
            new ClientError(code, `the relay closed the socket (${event.code} ${event.reason})`),
          );
        }
      };
      socket.onmessage = (event) => connection.onMessage(event.data);
      socket.onopen = () => {
        connection
          .request('auth', { token })
          .then((status) => {
            if (settled) return;
            settled = true;
            if (status === 200) {
              connection.startPing();
              resolve(connection);
            } else {
              reject(new ClientError('RELAY_REFUSED', `socket authentication failed (${status})`));
            }
          })
          .catch(() => undefined);
      };
    });
  }

  private startPing(): void {
    this.pingTimer = setInterval(() => {
      void this.request('ping').catch(() => undefined);
    }, PING_INTERVAL_MS);
  }

  request(verb: string, body?: unknown): Promise<number> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new ClientError('RELAY_UNREACHABLE', 'socket closed'));
        return;
      }
      this.pending.set(id, resolve);
      this.socket.send(
        JSON.stringify({ type: 'request', id, verb, ...(body === undefined ? {} : { body }) }),
      );
    });
  }

  private respond(id: number, status: number): void {
    if (!this.closed) this.socket.send(JSON.stringify({ type: 'response', id, status }));
  }

  private onMessage(data: unknown): void {
    let frame: { type?: string; id?: number; verb?: string; status?: number; body?: unknown };
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (frame.type === 'response' && typeof frame.id === 'number') {
      this.pending.get(frame.id)?.(frame.status ?? 0);
      this.pending.delete(frame.id);
      return;
    }
    if (frame.type !== 'request' || typeof frame.id !== 'number') return;
    const id = frame.id;
    if (frame.verb === 'queue.empty') {
      // Queued behind the envelopes before it, so "empty" means "all of those are handled".
      this.queue = this.queue.then(() => {
        this.respond(id, 200);
        this.handlers.onQueueEmpty();
      });
      return;
    }
    if (frame.verb === 'envelope') {
      const envelope = frame.body as Envelope;
      this.queue = this.queue.then(async () => {
        const status = await this.handlers.onEnvelope(envelope).catch(() => 500);
        this.respond(id, status);
      });
      return;
    }
    this.respond(id, 404);
  }

  private onClosed(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    for (const resolve of this.pending.values()) resolve(0);
    this.pending.clear();
    this.handlers.onClose(code, reason);
  }

  /** Waits for the envelopes already received to be handled and answered. */
  async drain(): Promise<void> {
    await this.queue;
  }

  close(): void {
    if (this.closed) return;
    this.socket.close(1000, 'bye');
    this.onClosed(1000, 'bye');
  }
}
