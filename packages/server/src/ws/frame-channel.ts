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
import { binaryFrame } from './binary-frame.ts';
import { coalesceWrites } from './write-coalescing.ts';

const frameValidator = Compile(FrameSchema);

/** An envelope's fields other than its content. */
export type EnvelopeFields = Omit<Envelope, 'content'>;

/**
 * The `envelope` request as JSON, joined by hand: the relay's most frequent frame and its largest,
 * which JSON.stringify scanned whole for characters to escape (2.0 µs with 1 KiB of content,
 * against 0.05 to join). None of its strings needs escaping, by where they come from: the id is
 * a UUID the relay made or read back, the content canonical base64 (checked as it arrived, or
 * encoded by the relay) or, in a binary frame, its length, and `storedHour` an ISO date; the rest
 * are numbers and booleans. So it is ASCII too. Only for envelopes the relay built itself: one
 * that came in a NOTIFY goes through JSON.stringify. A test holds it to JSON.stringify.
 *
 * @param content the JSON value of `content`: a quoted base64 string, or a length.
 */
export const envelopeFrame = (
  requestId: number,
  envelope: EnvelopeFields,
  content: string | number,
): string =>
  `{"type":"request","id":${requestId},"verb":"envelope","body":{"id":"${envelope.id}","type":${envelope.type},"content":${typeof content === 'number' ? content : `"${content}"`},"urgent":${envelope.urgent},"online":${envelope.online}${envelope.storedHour === undefined ? '' : `,"storedHour":"${envelope.storedHour}"`}}}`;

/** After this many invalid frames the client is broken or hostile: close 4400. */
export const MAX_INVALID_FRAMES = 20;
/** Frames a client may send per second on average, with a burst of twice that. */
export const FRAMES_PER_SECOND = 200;

export interface FrameChannelOwner {
  /**
   * A well-formed frame from the client; `tail`, for a binary one, is what follows its JSON
   * (the contents, which the owner cuts as the frame's meaning says).
   */
  onFrame(frame: Frame, tail?: Buffer): void;
  close(code: number, reason: string): void;
  readonly isClosed: boolean;
}

/**
 * The frame layer both relay sockets share: JSON parsing and schema validation of every client
 * frame, a per-socket frame rate, error frames for invalid ones (and 4400 after too many), and
 * request ids for frames the relay sends. What the frames mean is the owner's business. Binary
 * frames are taken only on a socket opened for them (`binary`), and only for the verbs in
 * `binaryVerbs`; every other binary frame is invalid, as on a socket of JSON frames.
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
    /** The client asked for binary frames (BINARY_FRAMES_QUERY) and may send these verbs so. */
    readonly binary = false,
    private readonly binaryVerbs: readonly string[] = [],
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
    this.sendData(JSON.stringify(frame));
  }

  /** A text frame, or a binary one (a Buffer). */
  private sendData(data: string | Buffer): void {
    if (this.owner.isClosed) return;
    coalesceWrites(this.socket);
    this.socket.send(data);
  }

  /**
   * Sends an envelope to the client (`envelopeFrame`), in a binary frame if the socket takes
   * them, else with its content in base64 (`base64` if the caller has it at hand); returns the
   * request's id.
   */
  requestEnvelope(envelope: EnvelopeFields, content: Buffer, base64?: string): number {
    const id = this.takeRequestId();
    if (this.owner.isClosed) return id;
    this.sendData(
      this.binary
        ? binaryFrame(envelopeFrame(id, envelope, content.length), content)
        : envelopeFrame(id, envelope, base64 ?? content.toString('base64')),
    );
    return id;
  }

  /**
   * An envelope the relay did not build itself (from a NOTIFY) to a socket of binary frames: its
   * header through JSON.stringify, and not sent if that is not ASCII, which no envelope of the
   * relay's making is.
   */
  requestEnvelopeChecked(envelope: EnvelopeFields, content: Buffer): void {
    const id = this.takeRequestId();
    const header = JSON.stringify({
      type: 'request',
      id,
      verb: 'envelope',
      body: { ...envelope, content: content.length },
    });
    if (/^[\x20-\x7e]*$/.test(header)) this.sendData(binaryFrame(header, content));
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
    if (isBinary) return this.receiveBinary(data);
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

  /**
   * A binary frame: its JSON part must be a frame of a verb that may be binary, and is read as
   * latin1, which is ASCII for any header that can pass: every string in those frames has an
   * ASCII pattern or a fixed value, so a byte above 0x7f fails the schemas that follow.
   */
  private receiveBinary(data: Buffer): void {
    if (!this.binary) {
      return this.invalid(
        'VALIDATION_FAILED',
        'frames are JSON text (binary frames: frames=binary)',
      );
    }
    if (data.length < 2 || 2 + data.readUInt16BE(0) > data.length) {
      return this.invalid('VALIDATION_FAILED', 'binary frame shorter than its header length');
    }
    const length = data.readUInt16BE(0);
    let frame: unknown;
    try {
      frame = JSON.parse(data.toString('latin1', 2, 2 + length));
    } catch {
      return this.invalid('MALFORMED_JSON', "binary frame's header is not JSON");
    }
    if (!frameValidator.Check(frame)) {
      return this.invalid('VALIDATION_FAILED', 'frame does not match the frame schema');
    }
    if (frame.type !== 'request' || !this.binaryVerbs.includes(frame.verb)) {
      return this.invalid('VALIDATION_FAILED', `only ${this.binaryVerbs.join(', ')} may be binary`);
    }
    this.owner.onFrame(frame, data.subarray(2 + length));
  }
}
