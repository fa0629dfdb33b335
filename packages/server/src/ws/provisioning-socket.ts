import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import { CLOSE_CODES, type Frame } from '@privcomm/wire';
import type { Metrics } from '../metrics.ts';
import type { EventHandler, RelayEvent } from '../services/events.ts';
import { FrameChannel } from './frame-channel.ts';
/** A delivered provisioning message must be answered within this time, else the socket closes. */
export const PROVISIONING_ANSWER_TIMEOUT_MS = 10_000;

/** A fresh provisioning address: 24 random bytes, base64url (32 characters). */
const newAddress = (): string => randomBytes(24).toString('base64url');

/**
 * The provisioning sockets this instance holds, by address, and the reaction to `provision`
 * events from every instance: hand the message to the local socket of that address, if any.
 * Addresses live in memory only and are never logged.
 */
export class ProvisioningRegistry implements EventHandler {
  private readonly sockets = new Map<string, ProvisioningSocket>();

  get size(): number {
    return this.sockets.size;
  }

  /** An address no local socket holds (24 random bytes collide in theory only). */
  allocate(): string {
    let address = newAddress();
    while (this.sockets.has(address)) address = newAddress();
    return address;
  }

  add(socket: ProvisioningSocket): void {
    this.sockets.set(socket.address, socket);
  }

  remove(socket: ProvisioningSocket): void {
    if (this.sockets.get(socket.address) === socket) this.sockets.delete(socket.address);
  }

  onEvent(event: RelayEvent): void {
    if (event.t !== 'provision' || typeof event.p !== 'string' || typeof event.c !== 'string') {
      return;
    }
    this.sockets.get(event.p)?.deliver(event.c);
  }

  /** Provisioning messages are never stored, so there is nothing to catch up on. */
  onResync(): void {}

  /** Closes every socket (shutdown); the new device opens a new one and shows a new address. */
  closeAll(code: number, reason: string): void {
    for (const socket of [...this.sockets.values()]) socket.close(code, reason);
  }
}

export interface ProvisioningSocketDeps {
  readonly registry: ProvisioningRegistry;
  readonly metrics: Metrics;
  /** The socket closes with 4408 this long after it opened. */
  readonly timeoutMs: number;
  readonly answerTimeoutMs?: number;
}

type State =
  | { name: 'waiting' }
  | { name: 'delivering'; requestId: number; timer: NodeJS.Timeout }
  | { name: 'closed' };

/**
 * One provisioning WebSocket (a new device waiting to be linked). It is told its address at once,
 * then receives at most one provisioning message at a time; a 2xx answer ends it with 1000. A
 * non-2xx answer frees it for another message (the primary may retry); no answer within 10 s ends
 * it with 1000 too. Messages arriving while one awaits its answer are dropped.
 */
export class ProvisioningSocket {
  readonly address: string;
  private state: State = { name: 'waiting' };
  private readonly channel: FrameChannel;
  private readonly lifetimeTimer: NodeJS.Timeout;

  constructor(
    private readonly socket: WebSocket,
    private readonly deps: ProvisioningSocketDeps,
  ) {
    this.address = deps.registry.allocate();
    this.lifetimeTimer = setTimeout(
      () => this.close(CLOSE_CODES.TIMEOUT, 'provisioning timeout'),
      deps.timeoutMs,
    );
    this.channel = new FrameChannel(socket, deps.metrics, this);
    socket.on('close', () => this.onClosed());
    socket.on('error', () => this.close(CLOSE_CODES.PROTOCOL_VIOLATION, 'socket error'));
    deps.metrics.wsConnections.inc();
    deps.registry.add(this);
    this.channel.request('provisioning.address', { address: this.address });
  }

  get isClosed(): boolean {
    return this.state.name === 'closed';
  }

  close(code: number, reason: string): void {
    if (this.state.name === 'closed') return;
    this.onClosed();
    this.socket.close(code, reason);
  }

  private onClosed(): void {
    if (this.state.name === 'closed') return;
    if (this.state.name === 'delivering') clearTimeout(this.state.timer);
    this.state = { name: 'closed' };
    clearTimeout(this.lifetimeTimer);
    this.deps.registry.remove(this);
    this.deps.metrics.wsConnections.dec();
  }

  /** Hands a provisioning message (base64) to the client, unless one awaits its answer. */
  deliver(content: string): void {
    if (this.state.name !== 'waiting') return;
    const timer = setTimeout(
      () => this.close(CLOSE_CODES.NORMAL, 'provisioning message not answered'),
      this.deps.answerTimeoutMs ?? PROVISIONING_ANSWER_TIMEOUT_MS,
    );
    const requestId = this.channel.request('provisioning.message', { content });
    this.state = { name: 'delivering', requestId, timer };
  }

  onFrame(frame: Frame): void {
    if (frame.type === 'response') {
      this.onResponse(frame.id, frame.status);
    } else if (frame.verb === 'ping') {
      this.channel.respond(frame.id, 200);
    } else {
      this.channel.respondUnknownVerb(frame.id);
    }
  }

  private onResponse(id: number, status: number): void {
    // Answers to the address request, and late or unknown answers, need no bookkeeping.
    if (this.state.name !== 'delivering' || this.state.requestId !== id) return;
    clearTimeout(this.state.timer);
    if (status >= 200 && status < 300) {
      this.close(CLOSE_CODES.NORMAL, 'provisioned');
    } else {
      this.state = { name: 'waiting' };
    }
  }
}
