import { Value } from 'typebox/value';
import {
  AuthChallengeBodySchema,
  BINARY_FRAMES,
  BINARY_FRAMES_QUERY,
  CLOSE_CODES,
  joinBinaryFrame,
  SignatureAuthAnswerSchema,
  SOCKET_LOGIN_QUERY,
  type Envelope,
  type SignatureAuthAnswer,
  type SignatureAuthBody,
  type SocketSendRequest,
} from '@privcomm/wire';
import { fromBase64 } from './bytes.ts';
import { ClientError } from './errors.ts';
import { parseBinaryFrame, parseEnvelope, parseFrame } from './incoming.ts';
import { noopLogger, type ClientLogger } from './logger.ts';
import {
  socketUnreachable,
  type Base64Codec,
  type HttpResponse,
  type SocketLike,
  type Transport,
} from './transport.ts';

const PING_INTERVAL_MS = 30_000;

/** A binary message's data: a Buffer (Node's `ws`) or an ArrayBuffer (binaryType arraybuffer). */
const asBytes = (data: unknown): Uint8Array =>
  data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(0);

export interface ConnectionHandlers {
  /** Handles one envelope; resolve with the status to answer (2xx deletes it on the relay). */
  onEnvelope(envelope: Envelope): Promise<number>;
  onQueueEmpty(): void;
  /** Every envelope received so far is handled and answered. */
  onIdle?(): void;
  onClose(code: number, reason: string): void;
}

/**
 * How a socket authenticates: with a device token, or by logging in on the socket itself
 * (docs/protocol.md, "Login on the socket"): the relay's first frame is a challenge, `sign`
 * answers it, and the token in the relay's answer goes to `onToken` for the HTTP requests.
 */
export type SocketAuth =
  | { readonly token: string }
  | {
      readonly sign: (nonce: Uint8Array) => Promise<SignatureAuthBody>;
      readonly onToken: (answer: SignatureAuthAnswer) => void;
    };

/** The relay closed a socket opened for a login by signature without challenging it: it has none. */
export const NO_SOCKET_LOGIN = 'NO_SOCKET_LOGIN';

/**
 * One authenticated message socket. Envelopes are handled one at a time, in the order the relay
 * sent them, and each is answered only after its handler finished (stored durably): the relay
 * deletes an envelope only on that answer. Every frame is checked against the wire schemas: a
 * malformed one is logged and skipped, a malformed envelope acknowledged (kept, it would come
 * back at every connection and never become readable), and the rest of the queue goes on.
 */
export class RelayConnection {
  private nextId = 1;
  /** Requests awaiting their response; called with undefined if the socket closes first. */
  private readonly pending = new Map<number, (answer: HttpResponse | undefined) => void>();
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  /** Set once the relay said it takes binary frames: sends then go as binary frames too. */
  private binarySends = false;
  /**
   * Before a login by signature: takes the relay's first `auth.challenge` (its nonce, or
   * undefined if it was malformed: the relay then times the socket out).
   */
  private onChallenge: ((nonce: Uint8Array | undefined) => void) | undefined;

  private constructor(
    private readonly socket: SocketLike,
    private readonly handlers: ConnectionHandlers,
    private readonly logger: ClientLogger,
    /** Binary frames were asked for (Transport.binaryFrames): envelopes may come as bytes. */
    private readonly codec: Base64Codec | undefined,
  ) {}

  static open(
    transport: Transport,
    auth: SocketAuth,
    handlers: ConnectionHandlers,
    logger: ClientLogger = noopLogger,
  ): Promise<RelayConnection> {
    const codec = transport.binaryFrames;
    const query = [codec && BINARY_FRAMES_QUERY, 'sign' in auth && SOCKET_LOGIN_QUERY].filter(
      Boolean,
    );
    const base = `${transport.relayUrl.replace(/^http/, 'ws')}/v1/websocket`;
    const url = query.length > 0 ? `${base}?${query.join('&')}` : base;
    return new Promise((resolve, reject) => {
      let socket: SocketLike;
      try {
        socket = transport.openSocket(url);
        if (codec) socket.binaryType = 'arraybuffer';
      } catch (error) {
        reject(
          new ClientError('RELAY_UNREACHABLE', `cannot open ${url}: ${(error as Error).message}`),
        );
        return;
      }
      const connection = new RelayConnection(socket, handlers, logger, codec);
      let settled = false;
      let challenged = false;
      const challenge = new Promise<Uint8Array>((resolveNonce) => {
        connection.onChallenge = (nonce) => {
          challenged = true;
          if (nonce) resolveNonce(nonce);
        };
      });
      const authenticate = async (): Promise<HttpResponse | undefined> => {
        if ('token' in auth) return connection.exchange('auth', { token: auth.token });
        return connection.exchange('auth', await auth.sign(await challenge));
      };
      socket.onerror = (event) => {
        if (!settled) {
          settled = true;
          reject(socketUnreachable(transport, event));
        }
      };
      socket.onclose = (event) => {
        // An older relay ignores the query and waits for a token until its auth timeout: the
        // caller logs in over HTTP and opens another socket; this one was never a connection.
        const noSocketLogin =
          !settled && 'sign' in auth && !challenged && event.code === CLOSE_CODES.TIMEOUT;
        connection.onClosed(event.code, event.reason, !noSocketLogin);
        if (!settled) {
          settled = true;
          if (noSocketLogin) {
            reject(
              new ClientError(
                'RELAY_UNREACHABLE',
                'the relay has no login on the socket; log in over HTTP',
                NO_SOCKET_LOGIN,
              ),
            );
            return;
          }
          const refused = event.code === CLOSE_CODES.UNAUTHENTICATED;
          reject(
            new ClientError(
              refused ? 'RELAY_REFUSED' : 'RELAY_UNREACHABLE',
              `the relay closed the socket (${event.code} ${event.reason})`,
              refused ? 'UNAUTHENTICATED' : undefined,
            ),
          );
        }
      };
      socket.onmessage = (event) => connection.onMessage(event.data);
      socket.onopen = () => {
        authenticate()
          .then((answer) => {
            if (settled) return;
            const status = answer?.status ?? 0;
            if (status === 200 && 'sign' in auth) {
              if (!Value.Check(SignatureAuthAnswerSchema, answer?.body)) {
                throw new ClientError(
                  'NOT_A_RELAY',
                  `the server at ${transport.relayUrl} answered in an unexpected format`,
                );
              }
              auth.onToken(answer.body);
            }
            settled = true;
            if (status === 200) {
              // A relay without binary frames answers without `frames`: JSON frames, then.
              connection.binarySends =
                codec !== undefined &&
                (answer?.body as { frames?: unknown } | undefined)?.frames === BINARY_FRAMES;
              connection.startPing();
              resolve(connection);
            } else {
              reject(
                new ClientError(
                  'RELAY_REFUSED',
                  `socket authentication failed (${status})`,
                  'UNAUTHENTICATED',
                ),
              );
            }
          })
          .catch((error: unknown) => {
            // The signer failed (a locked key store...), or the answer was not a relay's.
            if (settled) return;
            settled = true;
            connection.close();
            reject(error);
          });
      };
    });
  }

  private startPing(): void {
    this.pingTimer = setInterval(() => {
      void this.request('ping').catch(() => undefined);
    }, PING_INTERVAL_MS);
  }

  /** A request; resolves with the response's status, or 0 if the socket closed first. */
  request(verb: string, body?: unknown): Promise<number> {
    return this.exchange(verb, body).then((answer) => answer?.status ?? 0);
  }

  /**
   * A request whose answer is read like an HTTP response (`message.send`: the same status and
   * body as its route). Rejects with RELAY_UNREACHABLE if the socket closes before the answer: the
   * request may still have been carried out, as when an HTTP answer is lost.
   */
  async call(verb: string, body: unknown): Promise<HttpResponse> {
    const answer = await this.exchange(verb, body);
    if (!answer) {
      throw new ClientError('RELAY_UNREACHABLE', 'the socket closed before the relay answered');
    }
    return answer;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private exchange(verb: string, body?: unknown): Promise<HttpResponse | undefined> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new ClientError('RELAY_UNREACHABLE', 'socket closed'));
        return;
      }
      this.pending.set(id, resolve);
      this.socket.send(
        this.binarySends && verb === 'message.send'
          ? this.binarySend(id, body as SocketSendRequest)
          : JSON.stringify({ type: 'request', id, verb, ...(body === undefined ? {} : { body }) }),
      );
    });
  }

  /** `message.send` as a binary frame: each content's length in the JSON, its bytes after it. */
  private binarySend(id: number, body: SocketSendRequest): Uint8Array {
    const codec = this.codec as Base64Codec;
    const contents = body.messages.map((message) => codec.decode(message.content));
    const messages = body.messages.map((message, index) => ({
      ...message,
      content: contents[index]?.length,
    }));
    const header = JSON.stringify({
      type: 'request',
      id,
      verb: 'message.send',
      body: { ...body, messages },
    });
    return joinBinaryFrame(header, contents);
  }

  private respond(id: number, status: number): void {
    if (!this.closed) this.socket.send(JSON.stringify({ type: 'response', id, status }));
  }

  /** Runs after everything queued before it, then reports idleness if nothing came meanwhile. */
  private enqueue(task: () => Promise<void>): void {
    this.queued += 1;
    // Never rejects: one failure must not stop the envelopes queued behind it.
    this.queue = this.queue.then(async () => {
      try {
        await task();
      } catch {
        this.logger.log('error', 'frame handling failed');
      }
      this.queued -= 1;
      if (this.queued > 0 || this.closed) return;
      try {
        this.handlers.onIdle?.();
      } catch {
        this.logger.log('error', 'idle handler failed');
      }
    });
  }

  private onMessage(data: unknown): void {
    const parsed =
      typeof data === 'string' || !this.codec
        ? parseFrame(data)
        : parseBinaryFrame(asBytes(data), this.codec.encode);
    if (!parsed.ok) {
      this.logger.log('warn', 'frame ignored', parsed.reason);
      return;
    }
    const incoming = parsed.value;
    if (incoming.type === 'error') {
      this.logger.log('warn', 'the relay could not read a frame');
      return;
    }
    if (incoming.type === 'response') {
      const { id, status, body } = incoming.frame;
      this.pending.get(id)?.({ status, body });
      this.pending.delete(id);
      return;
    }
    const { id, verb, body } = incoming.frame;
    if (verb === 'auth.challenge') {
      // Not answered: the answer is `auth` (a response before it would close the socket).
      const take = this.onChallenge;
      this.onChallenge = undefined;
      const valid = Value.Check(AuthChallengeBodySchema, body);
      if (!take || !valid) this.logger.log('warn', 'frame ignored', 'unexpected auth.challenge');
      take?.(valid ? fromBase64(body.nonce) : undefined);
      return;
    }
    if (verb === 'queue.empty') {
      // Queued behind the envelopes before it, so "empty" means "all of those are handled".
      this.enqueue(async () => {
        this.respond(id, 200);
        this.handlers.onQueueEmpty();
      });
      return;
    }
    if (verb === 'envelope') {
      const envelope = parseEnvelope(body);
      this.enqueue(async () => {
        if (!envelope.ok) {
          this.logger.log('warn', 'envelope dropped', envelope.reason);
          this.respond(id, 200);
          return;
        }
        const status = await this.handlers.onEnvelope(envelope.value).catch(() => {
          // Kept on the relay and offered again at the next connection; the rest goes on.
          this.logger.log('warn', 'envelope kept', 'handling failed');
          return 500;
        });
        this.respond(id, status);
      });
      return;
    }
    this.logger.log('debug', 'unknown request refused');
    this.respond(id, 404);
  }

  private onClosed(code: number, reason: string, tellHandlers = true): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    for (const resolve of this.pending.values()) resolve(undefined);
    this.pending.clear();
    if (tellHandlers) this.handlers.onClose(code, reason);
  }

  /** Waits for the envelopes already received to be handled and answered. */
  async drain(): Promise<void> {
    await this.queue;
  }

  close(): void {
    if (this.closed) return;
    this.socket.close(CLOSE_CODES.NORMAL, 'bye');
    this.onClosed(CLOSE_CODES.NORMAL, 'bye');
  }
}
