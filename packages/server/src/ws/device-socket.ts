import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { Compile } from 'typebox/compile';
import {
  AuthBodySchema,
  BINARY_FRAMES,
  BinarySocketSendRequestSchema,
  CLOSE_CODES,
  cutContents,
  SocketSendRequestSchema,
  type AccountId,
  type BinarySocketSendRequest,
  type DeviceId,
  type Envelope,
  type Frame,
  type SendMessagesResponse,
  type SignatureAuthBody,
  type SocketSendRequest,
} from '@privcomm/wire';
import type { RelayConfig } from '../config.ts';
import { isDatabaseUnavailable } from '../db/executor.ts';
import { RelayError } from '../errors.ts';
import { safeError } from '../logger.ts';
import { storedHourNow } from '../stored-hour.ts';
import type { Metrics } from '../metrics.ts';
import type {
  DeviceQueue,
  NewEnvelope,
  QueueRead,
  StoredEnvelope,
} from '../repositories/envelopes.ts';
import type { AcknowledgementDeletes } from '../services/acknowledgements.ts';
import type { AuthenticatedDevice } from '../services/tokens.ts';
import type { ConnectionRegistry, DeviceSession } from './connection-registry.ts';
import {
  DirectDeliveries,
  type CommittedDirect,
  type DirectHandle,
} from '../services/direct-deliveries.ts';
import { FrameChannel, type EnvelopeFields } from './frame-channel.ts';

const contentBytes = (envelopes: readonly StoredEnvelope[]): number => {
  let bytes = 0;
  for (const envelope of envelopes) bytes += envelope.content.length;
  return bytes;
};

const authValidator = Compile(AuthBodySchema);
const sendValidator = Compile(SocketSendRequestSchema);
const binarySendValidator = Compile(BinarySocketSendRequestSchema);
/**
 * Sends a socket may have waiting for their commit. Each holds its ciphertext in memory until
 * then; more are answered 429 at once rather than queued without bound.
 */
export const MAX_SENDS_IN_FLIGHT = 64;
/** Online-only envelopes are dropped, never queued, when the socket is this far behind. */
const ONLINE_DROP_BUFFERED_BYTES = 1024 * 1024;
export interface DeviceSocketDeps {
  readonly config: RelayConfig['ws'];
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly registry: ConnectionRegistry;
  /** Reads the device's queue (in the relay, the reads of many sockets share a query). */
  readonly readQueue: (read: QueueRead) => Promise<StoredEnvelope[]>;
  /** Deletes acknowledged envelopes in groups, and again later if the database was away. */
  readonly acks: Pick<AcknowledgementDeletes, 'delete'>;
  /**
   * Verifies a token, or a signature over this socket's challenge, and that the device still
   * exists; then orders and announces the socket. UNAUTHENTICATED, and no announcement, for
   * credentials or a device that do not pass. A login by signature also gets a device token.
   */
  readonly authenticate: (credentials: SocketCredentials) => Promise<SocketLogin>;
  /** The message sender: `message.send` is PUT /v1/messages over the authenticated socket. */
  readonly send: (
    sender: AuthenticatedDevice,
    request: SocketSendRequest,
  ) => Promise<SendMessagesResponse>;
  /** The same for a `message.send` in a binary frame: its contents as bytes, in order. */
  readonly sendBytes: (
    sender: AuthenticatedDevice,
    request: BinarySocketSendRequest,
    contents: readonly Buffer[],
  ) => Promise<SendMessagesResponse>;
  /** The client opened the socket with BINARY_FRAMES_QUERY. */
  readonly binaryFrames: boolean;
  /** The client opened the socket with SOCKET_LOGIN_QUERY: challenge it at once. */
  readonly signatureLogin: boolean;
}

/** What `auth` proves: a token, or a signature over the nonce this socket sent. */
export type SocketCredentials =
  { readonly token: string } | (SignatureAuthBody & { readonly nonce: Buffer });

export interface SocketLogin {
  readonly device: AuthenticatedDevice;
  readonly connectionSeq: number;
  /** For a login by signature: the device token the answer carries, for HTTP requests. */
  readonly token?: { readonly token: string; readonly expiresAt: Date };
}

/** Bytes of the nonce in `auth.challenge`. */
const SOCKET_NONCE_BYTES = 32;

type State =
  | { name: 'unauthenticated' }
  | { name: 'authenticating' }
  | { name: 'open'; device: AuthenticatedDevice; connectionSeq: number }
  | { name: 'closed' };

/**
 * One client WebSocket, from its auth frame to its close. After authentication it drains the
 * device's queue: at most `window` envelopes and `windowBytes` of their content in flight (one
 * envelope always may be), each deleted only when the client answers it with 2xx. Memory per
 * socket is bounded by the window; everything else waits in the database, and a client that
 * stops answering is closed as a slow consumer.
 */
export class DeviceSocket implements DeviceSession {
  private state: State = { name: 'unauthenticated' };
  private readonly channel: FrameChannel;
  private readonly inFlight = new Map<number, { seq: number; sentAt: number; bytes: number }>();
  /** The content bytes of the envelopes in `inFlight`. */
  private inFlightBytes = 0;
  /** Envelopes delivered first, before any write (services/deliver-first.ts). */
  readonly direct = new DirectDeliveries(() => this.releaseWaiters());
  /** Sends waiting for the socket to be caught up (`afterCaughtUp`). */
  private readonly waiters = new Set<() => void>();
  private cursor = 0;
  /**
   * The last queue position known to exist for the device (from a NOTIFY or an offer); Infinity
   * while unknown (at start, after a listener outage). An acknowledgement reads the queue again
   * only if this is past the cursor: reading after every acknowledgement was one query per
   * delivered message, almost always for nothing when committed envelopes are handed over.
   */
  private knownLast = Number.POSITIVE_INFINITY;
  /**
   * Inserts under way on this instance with envelopes for this device. Their NOTIFY may arrive
   * before the insert's own answer; it then only records the position, and the offer that follows
   * sends the envelopes (or reads): without this, about one delivery in five cost a queue read.
   */
  private expectedOffers = 0;
  /** The highest position a NOTIFY announced while an offer was expected (kept apart from
   * knownLast, which a short read resets). */
  private announcedMeanwhile = 0;
  private draining = false;
  private wakeRequested = false;
  private queueEmptySent = false;
  private sendsInFlight = 0;
  private readonly authTimer: NodeJS.Timeout;
  /**
   * The nonce of this socket's `auth.challenge`, for one `auth` only: it exists nowhere else, so
   * a signature over it is good for this socket and nothing more.
   */
  private loginNonce: Buffer | undefined;

  constructor(
    private readonly socket: WebSocket,
    private readonly deps: DeviceSocketDeps,
  ) {
    this.authTimer = setTimeout(
      () => this.close(CLOSE_CODES.TIMEOUT, 'authentication timeout'),
      deps.config.authTimeoutMs,
    );
    this.channel = new FrameChannel(socket, deps.metrics, this, deps.binaryFrames, [
      'message.send',
    ]);
    socket.on('close', () => this.onClosed());
    socket.on('error', () => this.close(CLOSE_CODES.PROTOCOL_VIOLATION, 'socket error'));
    deps.metrics.wsConnections.inc();
    if (deps.signatureLogin) {
      this.loginNonce = randomBytes(SOCKET_NONCE_BYTES);
      this.channel.request('auth.challenge', { nonce: this.loginNonce.toString('base64') });
    }
  }

  get isClosed(): boolean {
    return this.state.name === 'closed';
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
    this.inFlightBytes = 0;
    this.direct.closed();
    this.releaseWaiters();
    this.deps.metrics.wsConnections.dec();
  }

  sweep(now: number): void {
    if (now - this.channel.lastFrameAt > this.deps.config.idleTimeoutMs) {
      this.close(CLOSE_CODES.TIMEOUT, 'idle timeout');
      return;
    }
    // The oldest stored envelope in flight, and the oldest delivered first (one written after the
    // window stays there, unanswered, until its row comes around: it never reaches inFlight if
    // the window stays full of them).
    const oldest = Math.min(
      this.inFlight.values().next().value?.sentAt ?? Number.POSITIVE_INFINITY,
      this.direct.oldestUnansweredAt() ?? Number.POSITIVE_INFINITY,
    );
    if (now - oldest > this.deps.config.ackTimeoutMs) {
      this.deps.metrics.slowConsumers.inc();
      this.close(CLOSE_CODES.SLOW_CONSUMER, 'envelopes not acknowledged');
    }
  }

  onFrame(frame: Frame, tail?: Buffer): void {
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
        else if (frame.verb === 'ping') this.channel.respond(frame.id, 200);
        else if (frame.verb === 'message.send') void this.onSend(frame.id, frame.body, tail);
        else this.channel.respondUnknownVerb(frame.id);
        return;
      case 'closed':
        return;
    }
  }

  private async onAuth(id: number, body: unknown): Promise<void> {
    this.state = { name: 'authenticating' };
    const nonce = this.loginNonce;
    this.loginNonce = undefined;
    try {
      if (!authValidator.Check(body)) throw new RelayError('UNAUTHENTICATED');
      let credentials: SocketCredentials;
      if ('token' in body) credentials = body;
      else if (nonce) credentials = { ...body, nonce };
      else throw new RelayError('UNAUTHENTICATED'); // no challenge was asked for
      const { device, connectionSeq, token } = await this.deps.authenticate(credentials);
      if (this.state.name !== 'authenticating') return; // closed meanwhile
      clearTimeout(this.authTimer);
      this.state = { name: 'open', device, connectionSeq };
      this.deps.registry.add(this);
      this.channel.respond(id, 200, {
        accountId: device.accountId,
        deviceId: device.deviceId,
        ...(token ? { token: token.token, expiresAt: token.expiresAt.toISOString() } : {}),
        // Only to a client that asked: one that did not may check the answer's fields strictly.
        ...(this.channel.binary ? { frames: BINARY_FRAMES } : {}),
      });
      this.wake();
    } catch (error) {
      if (error instanceof RelayError && error.status === 401) {
        this.close(CLOSE_CODES.UNAUTHENTICATED, 'authentication failed');
      } else if (error instanceof RelayError && error.status === 429) {
        this.close(CLOSE_CODES.SLOW_CONSUMER, 'too many logins from this address');
      } else {
        this.deps.log.warn({ err: safeError(error) }, 'socket authentication failed');
        this.close(1011, 'relay unavailable');
      }
    }
  }

  /**
   * A send over the socket: the same rules as PUT /v1/messages (one MessageSender), authorised by
   * the socket's authentication instead of a token per request. Answered 200 only once every
   * envelope is committed, exactly like the HTTP route; errors carry the same status and body.
   * In a binary frame (`tail` given) the contents follow the JSON as bytes.
   */
  private async onSend(id: number, body: unknown, tail: Buffer | undefined): Promise<void> {
    const { device } = this.openState();
    let send: () => Promise<SendMessagesResponse>;
    if (tail === undefined) {
      if (!sendValidator.Check(body)) {
        return this.refuse(id, 'body does not match SocketSendRequest');
      }
      send = () => this.deps.send(device, body);
    } else {
      if (!binarySendValidator.Check(body)) {
        return this.refuse(id, 'body does not match SocketSendRequest (content: a length)');
      }
      const cut = cutContents(
        tail,
        body.messages.map((message) => message.content),
      );
      if (!cut) return this.refuse(id, 'the content lengths do not add up to the frame');
      // Copies: a view would keep the whole network read the frame came in (often many frames)
      // alive for as long as the envelope is held, until it is durable.
      const contents = cut.map((content) => Buffer.from(content));
      send = () => this.deps.sendBytes(device, body, contents);
    }
    if (this.sendsInFlight >= MAX_SENDS_IN_FLIGHT) {
      const error = new RelayError('RATE_LIMITED', 'too many sends awaiting their commit', {
        retryAfterSeconds: 1,
      });
      this.channel.respond(id, error.status, error.toBody());
      return;
    }
    this.sendsInFlight += 1;
    try {
      this.channel.respond(id, 200, await send());
    } catch (caught) {
      const error =
        caught instanceof RelayError
          ? caught
          : new RelayError(isDatabaseUnavailable(caught) ? 'UNAVAILABLE' : 'INTERNAL');
      if (error.status >= 500) {
        this.deps.log.error({ err: safeError(caught), code: error.code }, 'socket send failed');
      }
      this.channel.respond(id, error.status, error.toBody());
    } finally {
      this.sendsInFlight -= 1;
    }
  }

  private refuse(id: number, details: string): void {
    const error = new RelayError('VALIDATION_FAILED', details);
    this.channel.respond(id, error.status, error.toBody());
  }

  private onResponse(id: number, status: number): void {
    const acked = status >= 200 && status < 300;
    const entry = this.inFlight.get(id);
    if (entry) {
      this.inFlight.delete(id);
      this.inFlightBytes -= entry.bytes;
    }
    // Online envelopes and late answers need no bookkeeping.
    else if (!this.direct.answer(id, acked)) return;
    // An answer to an envelope in flight: the window bounds these, not the frame rate.
    this.channel.refundFrameToken();
    if (acked) this.deps.metrics.envelopesAcknowledged.inc();
    if (acked && entry) this.deleteAcknowledged(entry.seq);
    // Room in the window: worth a read only if something may be queued beyond what was sent, and
    // only once half the window is free (in envelopes and in bytes), so that a drain reads its
    // queue in batches of at least half a window instead of one row per acknowledgement.
    const { window, windowBytes } = this.deps.config;
    if (
      this.knownLast > this.cursor &&
      this.inFlight.size <= Math.floor(window / 2) &&
      this.inFlightBytes <= windowBytes / 2
    ) {
      this.requestDrain();
    }
    this.releaseWaiters();
  }

  wake(upTo?: number): void {
    if (this.state.name !== 'open') return;
    // Without a position nothing is known: read until a read comes back short.
    this.knownLast = upTo === undefined ? Number.POSITIVE_INFINITY : Math.max(this.knownLast, upTo);
    // Everything up to `upTo` has been sent on this socket already (handed over by `offer`).
    if (upTo !== undefined && this.cursor >= upTo) return;
    // An insert of this instance is about to offer them: its offer reads if it cannot send.
    if (upTo !== undefined && this.expectedOffers > 0) {
      this.announcedMeanwhile = Math.max(this.announcedMeanwhile, upTo);
      return;
    }
    this.requestDrain();
  }

  expectOffer(): void {
    this.expectedOffers += 1;
  }

  private requestDrain(): void {
    if (this.state.name !== 'open') return;
    if (this.draining) {
      this.wakeRequested = true;
      return;
    }
    void this.drain();
  }

  /**
   * Envelopes this instance has just committed for the device. Sent at once only when they are
   * the very next positions after the cursor, no queue read is under way and the window has room
   * for all of them; otherwise the queue is read as usual, so order and the window hold either
   * way. They are tracked and deleted on acknowledgement exactly like fetched ones.
   */
  offer(envelopes: readonly StoredEnvelope[]): void {
    this.takeOffer(envelopes);
    // Sends that waited for this write may now go first (or find the socket behind, and write).
    this.releaseWaiters();
  }

  private takeOffer(envelopes: readonly StoredEnvelope[]): void {
    this.expectedOffers = Math.max(0, this.expectedOffers - 1);
    if (this.expectedOffers === 0) {
      this.knownLast = Math.max(this.knownLast, this.announcedMeanwhile);
      this.announcedMeanwhile = 0;
    }
    const first = envelopes[0];
    const last = envelopes[envelopes.length - 1];
    if (this.state.name !== 'open') return;
    if (first === undefined || last === undefined) {
      // The insert failed (or had nothing for this device): read what a NOTIFY announced meanwhile.
      if (this.expectedOffers === 0 && this.knownLast > this.cursor) this.requestDrain();
      return;
    }
    if (
      this.draining ||
      first.seq !== this.cursor + 1 ||
      this.inFlight.size + envelopes.length > this.deps.config.window ||
      this.inFlightBytes + contentBytes(envelopes) > this.deps.config.windowBytes
    ) {
      this.wake(last.seq);
      return;
    }
    this.knownLast = Math.max(this.knownLast, last.seq);
    for (const envelope of envelopes) this.sendEnvelope(envelope);
    // A NOTIFY that arrived while this offer was expected may have announced more.
    if (this.expectedOffers === 0 && this.knownLast > this.cursor) this.requestDrain();
  }

  /** A write with envelopes for the device is under way on this instance. */
  private get writing(): boolean {
    return this.expectedOffers > 0 || this.direct.storesUnderWay > 0;
  }

  afterCaughtUp(callback: () => void): () => void {
    if (this.caughtUp || this.state.name !== 'open') {
      callback();
      return () => {};
    }
    this.waiters.add(callback);
    return () => this.waiters.delete(callback);
  }

  /**
   * Lets sends waiting in `afterCaughtUp` try again, in the order they came, once the socket is
   * caught up (or closed). Called wherever it may have become so: a write or its hand-over done,
   * the end of a drain, an acknowledgement that freed the window.
   */
  private releaseWaiters(): void {
    if (this.waiters.size === 0 || (this.state.name === 'open' && !this.caughtUp)) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter();
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
      this.releaseWaiters();
    }
  }

  /** Envelopes on the socket awaiting an answer: stored ones, and ones delivered first. */
  private get unanswered(): number {
    return this.inFlight.size + this.direct.awaitingAnswer;
  }

  private deleteAcknowledged(seq: number): void {
    const { accountId, deviceId } = this.openState().device;
    this.deps.acks.delete({ accountId, deviceId, seq });
  }

  private async fillWindow(): Promise<void> {
    const { window, windowBytes } = this.deps.config;
    while (
      this.state.name === 'open' &&
      this.unanswered < window &&
      this.inFlightBytes < windowBytes
    ) {
      const wanted = window - this.unanswered;
      const room = windowBytes - this.inFlightBytes;
      const { accountId, deviceId } = this.state.device;
      const knownBefore = this.knownLast;
      const batch = await this.deps.readQueue({
        accountId,
        deviceId,
        afterSeq: this.cursor,
        limit: wanted,
        maxBytes: room,
      });
      for (const envelope of batch) this.sendEnvelope(envelope);
      // Short of the count and of the bytes: the end of the queue. Short only of the count, the
      // bytes may have cut it, and the answers that free room read on, unless nothing more is
      // known to be queued.
      if (batch.length < wanted && (contentBytes(batch) < room || this.knownLast <= this.cursor)) {
        // The queue is read to its end (expired rows are skipped for good). What was learned
        // during the read (a NOTIFY, an offer) asked for another read through wakeRequested.
        if (this.knownLast <= knownBefore) this.knownLast = this.cursor;
        if (!this.queueEmptySent && this.state.name === 'open') {
          this.queueEmptySent = true;
          this.channel.request('queue.empty');
        }
        return;
      }
    }
  }

  private sendEnvelope(stored: StoredEnvelope): void {
    if (this.state.name !== 'open') return;
    this.cursor = stored.seq;
    const direct = this.direct.committed(stored.id);
    if (direct) {
      this.adoptCommitted(direct, stored.seq, stored.content.length);
      return;
    }
    const fields: EnvelopeFields = {
      id: stored.id,
      type: stored.type,
      urgent: stored.urgent,
      online: false,
      storedHour: stored.storedHour,
    };
    const id = this.channel.requestEnvelope(fields, stored.content);
    this.inFlight.set(id, { seq: stored.seq, sentAt: Date.now(), bytes: stored.content.length });
    this.inFlightBytes += stored.content.length;
    this.deps.metrics.envelopesDelivered.inc();
  }

  /**
   * Deliver first (services/deliver-first.ts): caught up means nothing stored for the device is
   * still to be sent here, no write for it is under way, and the window has room, so an envelope
   * sent now overtakes nothing. What this socket knows (NOTIFYs, offers, its reads) is checked
   * against `stored`, read from the database after the send arrived: a row another instance
   * committed before it, whose wake-up has not reached this instance yet, is either gone or at or
   * below the cursor.
   */
  canTakeDirect(stored: Pick<DeviceQueue, 'envelopes' | 'lastSeq'>): boolean {
    return this.caughtUp && (stored.envelopes === 0 || stored.lastSeq <= this.cursor);
  }

  /**
   * Whether an envelope that cannot go first now may once the socket is caught up: whenever it
   * is open. What holds it back passes by itself: a write under way commits, a drain reads to the
   * end of the queue, acknowledgements free the window. (A row another instance committed whose
   * NOTIFY is still on its way is not waited for: the socket looks caught up, the retry fails and
   * the envelope is written.)
   */
  waitingMayHelp(stored: Pick<DeviceQueue, 'envelopes' | 'lastSeq'>): boolean {
    return this.state.name === 'open' && !this.canTakeDirect(stored);
  }

  heldBackByWrites(): boolean {
    return this.state.name === 'open' && this.writing && this.unanswered < this.deps.config.window;
  }

  /**
   * Everything this socket knows to be stored for the device was sent on it, no write for it is
   * under way here, no read, the window has room, and the client reads what it is sent (less
   * than the window's bytes wait unsent: envelopes delivered first are counted, not weighed).
   */
  private get caughtUp(): boolean {
    return (
      this.state.name === 'open' &&
      !this.writing &&
      !this.draining &&
      this.knownLast <= this.cursor &&
      this.unanswered < this.deps.config.window &&
      this.socket.bufferedAmount < this.deps.config.windowBytes
    );
  }

  sendDirect(row: NewEnvelope, onAnswer: (acked: boolean) => void): DirectHandle {
    const fields: EnvelopeFields = {
      id: row.id,
      type: row.type,
      urgent: row.urgent,
      online: false,
      storedHour: storedHourNow(),
    };
    const id = this.channel.requestEnvelope(fields, row.content, row.base64);
    this.deps.metrics.envelopesDelivered.inc();
    return this.direct.add(id, row.id, onAnswer);
  }

  /**
   * A committed envelope that went out first, before its write: no second frame. Tracked under
   * its first request id if unanswered; its row deleted at once if the device acknowledged it
   * meanwhile; left queued if the device refused it (as any refused envelope is).
   */
  private adoptCommitted(direct: CommittedDirect, seq: number, bytes: number): void {
    if (direct.answer === 'acked') this.deleteAcknowledged(seq);
    else if (direct.answer === undefined) {
      this.inFlight.set(direct.requestId, { seq, sentAt: direct.sentAt, bytes });
      this.inFlightBytes += bytes;
    }
  }

  deliverOnline(envelope: Envelope): void {
    if (this.state.name !== 'open' || this.socket.bufferedAmount > ONLINE_DROP_BUFFERED_BYTES) {
      return;
    }
    // Through JSON.stringify, not envelopeFrame: this envelope came in a NOTIFY, which the
    // relay's own checks did not produce (a rare path, and at most 4 KiB).
    if (this.channel.binary) {
      this.channel.requestEnvelopeChecked(envelope, Buffer.from(envelope.content, 'base64'));
    } else {
      this.channel.request('envelope', envelope);
    }
    this.deps.metrics.onlineDelivered.inc();
  }
}
