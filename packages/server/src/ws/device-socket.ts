import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { Compile } from 'typebox/compile';
import {
  AuthBodySchema,
  CLOSE_CODES,
  ERRORS,
  FrameSchema,
  type AccountId,
  type DeviceId,
  type Envelope,
  type ErrorCode,
  type Frame,
} from '@privcomm/wire';
import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import { safeError } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import type { EnvelopesRepository, StoredEnvelope } from '../repositories/envelopes.ts';
import type { GroupCommit } from '../services/group-commit.ts';
import type { AuthenticatedDevice } from '../services/tokens.ts';
import type { ConnectionRegistry, DeviceSession } from './connection-registry.ts';

const frameValidator = Compile(FrameSchema);
const authValidator = Compile(AuthBodySchema);

/** After this many invalid frames the client is broken or hostile: close 4400. */
const MAX_INVALID_FRAMES = 20;
/** Frames a client may send per second on average, with a burst of twice that. */
const FRAMES_PER_SECOND = 200;
/** Online-only envelopes are dropped, never queued, when the socket is this far behind. */
const ONLINE_DROP_BUFFERED_BYTES = 1024 * 1024;

export interface DeviceSocketDeps {
  readonly config: RelayConfig['ws'];
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly registry: ConnectionRegistry;
  readonly envelopes: EnvelopesRepository;
  readonly acks: GroupCommit<number>;
  /** Verifies a token and that its device still exists; then orders and announces the socket. */
  readonly authenticate: (token: string) => Promise<AuthenticatedDevice>;
  readonly announce: (device: AuthenticatedDevice) => Promise<number>;
}

type State =
  | { name: 'unauthenticated' }
  | { name: 'authenticating' }
  | { name: 'open'; device: AuthenticatedDevice; connectionSeq: number }
  | { name: 'closed' };

/**
 * One client WebSocket, from its auth frame to its close. After authentication it drains the
 * device's queue: at most `window` envelopes in flight, each deleted only when the client answers
 * it with 2xx. Memory per socket is bounded by the window; everything else waits in the
 * database, and a client that stops answering is closed as a slow consumer.
 */
export class DeviceSocket implements DeviceSession {
  private state: State = { name: 'unauthenticated' };
  private nextRequestId = 1;
  private readonly inFlight = new Map<number, { seq: number; sentAt: number }>();
  private cursor = 0;
  private draining = false;
  private wakeRequested = false;
  private queueEmptySent = false;
  private invalidFrames = 0;
  private lastFrameAt = Date.now();
  private frameTokens = FRAMES_PER_SECOND * 2;
  private readonly authTimer: NodeJS.Timeout;

  constructor(
    private readonly socket: WebSocket,
    private readonly deps: DeviceSocketDeps,
  ) {
    this.authTimer = setTimeout(
      () => this.close(CLOSE_CODES.TIMEOUT, 'authentication timeout'),
      deps.config.authTimeoutMs,
    );
    socket.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    socket.on('close', () => this.onClosed());
    socket.on('error', () => this.close(CLOSE_CODES.PROTOCOL_VIOLATION, 'socket error'));
    deps.metrics.wsConnections.inc();
  }

  get accountId(): AccountId {
    return this.openState().device.accountId;
  }

  get deviceId(): DeviceId {
    return this.openState().device.deviceId;
  }

  get connectionSeq(): number {
    return this.openState().connectionSeq;
  }

  private openState(): Extract<State, { name: 'open' }> {
    if (this.state.name !== 'open') throw new Error('socket is not authenticated');
    return this.state;
  }

  close(code: number, reason: string): void {
    if (this.state.name === 'closed') return;
    this.onClosed();
    this.socket.close(code, reason);
  }

  private onClosed(): void {
    if (this.state.name === 'closed') return;
    if (this.state.name === 'open') this.deps.registry.remove(this);
    this.state = { name: 'closed' };
    clearTimeout(this.authTimer);
    this.inFlight.clear();
    this.deps.metrics.wsConnections.dec();
  }

  sweep(now: number): void {
    if (now - this.lastFrameAt > this.deps.config.idleTimeoutMs) {
      this.close(CLOSE_CODES.TIMEOUT, 'idle timeout');
      return;
    }
    for (const { sentAt } of this.inFlight.values()) {
      if (now - sentAt > this.deps.config.ackTimeoutMs) {
        this.deps.metrics.slowConsumers.inc();
        this.close(CLOSE_CODES.SLOW_CONSUMER, 'envelopes not acknowledged');
      }
      return; // the first entry is the oldest
    }
  }

  /** Request ids are 32-bit on the wire; they wrap rather than overflow. */
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
    switch (this.state.name) {
      case 'unauthenticated':
        if (frame.type !== 'request' || frame.verb !== 'auth') {
          this.close(CLOSE_CODES.UNAUTHENTICATED, 'first frame must be auth');
          return;
        }
        void this.onAuth(frame.id, frame.body);
        return;
      case 'authenticating':
        // Nothing may overtake the auth exchange; a client that pipelines is closed.
        this.close(CLOSE_CODES.UNAUTHENTICATED, 'frame before auth response');
        return;
      case 'open':
        if (frame.type === 'response') this.onResponse(frame.id, frame.status);
        else if (frame.verb === 'ping') this.respond(frame.id, 200);
        else this.respond(frame.id, 404, new RelayError('NOT_FOUND', `unknown verb`).toBody());
        return;
      case 'closed':
        return;
    }
  }

  private async onAuth(id: number, body: unknown): Promise<void> {
    this.state = { name: 'authenticating' };
    try {
      if (!authValidator.Check(body)) throw new RelayError('UNAUTHENTICATED');
      const device = await this.deps.authenticate(body.token);
      const connectionSeq = await this.deps.announce(device);
      if (this.state.name !== 'authenticating') return; // closed meanwhile
      clearTimeout(this.authTimer);
      this.state = { name: 'open', device, connectionSeq };
      this.deps.registry.add(this);
      this.respond(id, 200, { accountId: device.accountId, deviceId: device.deviceId });
      this.wake();
    } catch (error) {
      if (error instanceof RelayError && error.status === 401) {
        this.close(CLOSE_CODES.UNAUTHENTICATED, 'authentication failed');
      } else {
        this.deps.log.warn({ err: safeError(error) }, 'socket authentication failed');
        this.close(1011, 'relay unavailable');
      }
    }
  }

  private onResponse(id: number, status: number): void {
    const entry = this.inFlight.get(id);
    if (!entry) return; // online envelopes and late answers need no bookkeeping
    this.inFlight.delete(id);
    if (status >= 200 && status < 300) {
      this.deps.metrics.envelopesAcknowledged.inc();
      this.deps.acks.submit([entry.seq]).catch((error: unknown) => {
        // The envelope stays queued and comes again on the next connection: at least once.
        this.deps.log.warn({ err: safeError(error) }, 'acknowledged envelope not deleted');
      });
    }
    this.wake();
  }

  wake(): void {
    if (this.state.name !== 'open') return;
    if (this.draining) {
      this.wakeRequested = true;
      return;
    }
    void this.drain();
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      do {
        this.wakeRequested = false;
        await this.fillWindow();
      } while (this.wakeRequested && this.state.name === 'open');
    } catch (error) {
      this.deps.log.warn({ err: safeError(error) }, 'queue read failed; retrying');
      setTimeout(() => this.wake(), 1_000).unref();
    } finally {
      this.draining = false;
    }
  }

  private async fillWindow(): Promise<void> {
    while (this.state.name === 'open' && this.inFlight.size < this.deps.config.window) {
      const wanted = this.deps.config.window - this.inFlight.size;
      const { accountId, deviceId } = this.state.device;
      const batch = await this.deps.envelopes.fetchAfter(accountId, deviceId, this.cursor, wanted);
      for (const envelope of batch) this.sendEnvelope(envelope);
      if (batch.length < wanted) {
        if (!this.queueEmptySent && this.state.name === 'open') {
          this.queueEmptySent = true;
          this.send({ type: 'request', id: this.takeRequestId(), verb: 'queue.empty' });
        }
        return;
      }
    }
  }

  private sendEnvelope(stored: StoredEnvelope): void {
    if (this.state.name !== 'open') return;
    const id = this.takeRequestId();
    this.cursor = stored.seq;
    this.inFlight.set(id, { seq: stored.seq, sentAt: Date.now() });
    const envelope: Envelope = {
      id: stored.id,
      type: stored.type,
      content: stored.content.toString('base64'),
      urgent: stored.urgent,
      online: false,
      storedHour: stored.storedHour.toISOString(),
    };
    this.send({ type: 'request', id, verb: 'envelope', body: envelope });
    this.deps.metrics.envelopesDelivered.inc();
  }

  deliverOnline(envelope: Envelope): void {
    if (this.state.name !== 'open' || this.socket.bufferedAmount > ONLINE_DROP_BUFFERED_BYTES) {
      return;
    }
    this.send({ type: 'request', id: this.takeRequestId(), verb: 'envelope', body: envelope });
    this.deps.metrics.onlineDelivered.inc();
  }
}
