import type { WebSocket } from 'ws';
import { Compile } from 'typebox/compile';
import {
  CLOSE_CODES,
  ERRORS,
  FrameSchema,
  type Envelope,
  type ErrorCode,
  type Frame,
} from '@privcomm/wire';
import { RelayError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { coalesceWrites } from './write-coalescing.ts';

const frameValidator = Compile(FrameSchema);

/**
 * The `envelope` request as JSON, joined by hand: the relay's most frequent frame and its largest,
 * which JSON.stringify scanned whole for characters to escape (2.0 µs with 1 KiB of content,
 * against 0.05 to join). None of its strings needs escaping, by where they come from: the id is
 * a UUID the relay made or read back, `content` canonical base64 (checked as it arrived, or
 * encoded by the relay), and `storedHour` an ISO date; the rest are numbers and booleans. Only
 * for envelopes the relay built itself: one that came in a NOTIFY goes through JSON.stringify.
 * A test holds it to JSON.stringify.
 */
export const envelopeFrame = (requestId: number, envelope: Envelope): string =>
  `{"type":"request","id":${requestId},"verb":"envelope","body":{"id":"${envelope.id}","type":${envelope.type},"content":"${envelope.content}","urgent":${envelope.urgent},"online":${envelope.online}${envelope.storedHour === undefined ? '' : `,"storedHour":"${envelope.storedHour}"`}}}`;

/** After this many invalid frames the client is broken or hostile: close 4400. */
export const MAX_INVALID_FRAMES = 20;
/** Frames a client may send per second on average, with a burst of twice that. */
export const FRAMES_PER_SECOND = 200;

export interface FrameChannelOwner {
  /** A well-formed frame from the client. */
  onFrame(frame: Frame): void;
  close(code: number, reason: string): void;
  readonly isClosed: boolean;
}

/**
 * The frame layer both relay sockets share: JSON parsing and schema validation of every client
 * frame, a per-socket frame rate, error frames for invalid ones (and 4400 after too many), and
 * request ids for frames the relay sends. What the frames mean is the owner's business.
 */
export class FrameChannel {
  private nextRequestId = 1;
  private invalidFrames = 0;
  private frameTokens = FRAMES_PER_SECOND * 2;
  /** When the client last sent anything (idle timeouts read it). */
  lastFrameAt = Date.now();

  constructor(
    private readonly socket: WebSocket,
    private readonly metrics: Metrics,
    private readonly owner: FrameChannelOwner,
  ) {
    socket.on('message', (data, isBinary) => this.receive(data as Buffer, isBinary));
  }

  /** Request ids are 32-bit on the wire; they wrap rather than overflow. */
  private takeRequestId(): number {
    const id = this.nextRequestId;
    this.nextRequestId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  send(frame: object): void {
    this.sendText(JSON.stringify(frame));
  }

  private sendText(text: string): void {
    if (this.owner.isClosed) return;
    coalesceWrites(this.socket);
    this.socket.send(text);
  }

  /** Sends an envelope to the client (`envelopeFrame`); returns the request's id. */
  requestEnvelope(envelope: Envelope): number {
    const id = this.takeRequestId();
    this.sendText(envelopeFrame(id, envelope));
    return id;
  }

  /** Sends a request to the client; returns its id, to match the client's response. */
  request(verb: string, body?: unknown): number {
    const id = this.takeRequestId();
    this.send({ type: 'request', id, verb, ...(body === undefined ? {} : { body }) });
    return id;
  }

  respond(id: number, status: number, body?: unknown): void {
    this.send({ type: 'response', id, status, ...(body === undefined ? {} : { body }) });
  }

  respondUnknownVerb(id: number): void {
    this.respond(id, 404, new RelayError('NOT_FOUND', 'unknown verb').toBody());
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

  /**
   * Gives back the token a frame took, for a frame the relay asked for: the acknowledgement of an
   * envelope it sent. Those are bounded by the relay's own window, so they cannot flood, and a
   * client draining a long queue as fast as it arrives must not be cut off for answering.
   */
  refundFrameToken(): void {
    this.frameTokens = Math.min(FRAMES_PER_SECOND * 2, this.frameTokens + 1);
  }

  private invalid(code: ErrorCode, details: string): void {
    this.invalidFrames += 1;
    this.metrics.invalidFrames.inc();
    if (this.invalidFrames > MAX_INVALID_FRAMES) {
      this.owner.close(CLOSE_CODES.PROTOCOL_VIOLATION, 'too many invalid frames');
    } else {
      this.send({ type: 'error', code, message: ERRORS[code].message, details });
    }
  }

  private receive(data: Buffer, isBinary: boolean): void {
    if (this.owner.isClosed) return;
    if (!this.takeFrameToken()) {
      this.owner.close(CLOSE_CODES.SLOW_CONSUMER, 'too many frames');
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
    this.owner.onFrame(frame);
  }
}
