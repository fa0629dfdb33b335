import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import { Compile } from 'typebox/compile';
import { CLOSE_CODES, ERRORS, FrameSchema, type ErrorCode, type Frame } from '@privcomm/wire';
import { RelayError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { EventHandler, RelayEvent } from '../services/events.ts';

const frameValidator = Compile(FrameSchema);

/** After this many invalid frames the client is broken or hostile: close 4400 (as device sockets). */
const MAX_INVALID_FRAMES = 20;
/** Frames a client may send per second on average, with a burst of twice that (as device sockets). */
const FRAMES_PER_SECOND = 200;
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
  private nextRequestId = 1;
  private invalidFrames = 0;
  private lastFrameAt = Date.now();
  private frameTokens = FRAMES_PER_SECOND * 2;
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
    socket.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    socket.on('close', () => this.onClosed());
    socket.on('error', () => this.close(CLOSE_CODES.PROTOCOL_VIOLATION, 'socket error'));
    deps.metrics.wsConnections.inc();
    deps.registry.add(this);
    this.send({
      type: 'request',
      id: this.takeRequestId(),
      verb: 'provisioning.address',
      body: { address: this.address },
    });
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
    const requestId = this.takeRequestId();
    const timer = setTimeout(
      () => this.close(CLOSE_CODES.NORMAL, 'provisioning message not answered'),
      this.deps.answerTimeoutMs ?? PROVISIONING_ANSWER_TIMEOUT_MS,
    );
    this.state = { name: 'delivering', requestId, timer };
    this.send({ type: 'request', id: requestId, verb: 'provisioning.message', body: { content } });
  }

  private takeRequestId(): number {
    const id = this.nextRequestId;
    this.nextRequestId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  private send(frame: object): void {
    if (this.state.name !== 'closed') this.socket.send(JSON.stringify(frame));
  }

  private sendError(code: ErrorCode, details?: string): void {
    this.send({ type: 'error', code, message: ERRORS[code].message, details });
  }

  private respond(id: number, status: number, body?: unknown): void {
    this.send({ type: 'response', id, status, ...(body === undefined ? {} : { body }) });
  }

  private takeFrameToken(): boolean {
    const now = Date.now();
    this.frameTokens = Math.min(
      FRAMES_PER_SECOND * 2,
      this.frameTokens + ((now - this.lastFrameAt) / 1000) * FRAMES_PER_SECOND,
    );
    this.lastFrameAt = now;
    if (this.frameTokens < 1) return false;
    this.frameTokens -= 1;
    return true;
  }

  private invalid(code: ErrorCode, details: string): void {
    this.invalidFrames += 1;
    this.deps.metrics.invalidFrames.inc();
    if (this.invalidFrames > MAX_INVALID_FRAMES) {
      this.close(CLOSE_CODES.PROTOCOL_VIOLATION, 'too many invalid frames');
    } else {
      this.sendError(code, details);
    }
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state.name === 'closed') return;
    if (!this.takeFrameToken()) {
      this.close(CLOSE_CODES.SLOW_CONSUMER, 'too many frames');
      return;
    }
    if (isBinary) return this.invalid('VALIDATION_FAILED', 'frames are JSON text');
    let frame: unknown;
    try {
      frame = JSON.parse(data.toString('utf8'));
    } catch {
      return this.invalid('MALFORMED_JSON', 'frame is not JSON');
    }
    if (!frameValidator.Check(frame)) {
      return this.invalid('VALIDATION_FAILED', 'frame does not match the frame schema');
    }
    this.onFrame(frame);
  }

  private onFrame(frame: Frame): void {
    if (frame.type === 'response') {
      this.onResponse(frame.id, frame.status);
    } else if (frame.verb === 'ping') {
      this.respond(frame.id, 200);
    } else {
      this.respond(frame.id, 404, new RelayError('NOT_FOUND', 'unknown verb').toBody());
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
