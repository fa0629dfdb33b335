import { Type, type Static } from 'typebox';
import { SignatureAuthBodySchema } from './socket-login.ts';

/**
 * WebSocket frames. Each frame is one JSON text message. Either side may send requests; each
 * request carries an id chosen by its sender and is answered by exactly one response with the
 * same id. The two directions have separate id spaces.
 */

/** Largest frame either side may send; bigger frames close the socket with 1009. */
export const MAX_FRAME_BYTES = 256 * 1024;

export const FrameIdSchema = Type.Integer({ minimum: 0, maximum: 0xffffffff });

/**
 * Verbs a client may send. `auth` must be the first frame; `message.send` is PUT
 * /v1/messages/{accountId} over the authenticated socket (body: SocketSendRequest).
 */
export const CLIENT_VERBS = ['auth', 'ping', 'message.send'] as const;
export type ClientVerb = (typeof CLIENT_VERBS)[number];

/**
 * Verbs the relay sends. Answer `envelope` with 2xx only once its content is stored durably;
 * `auth.challenge` (on a socket opened for a login by signature) is answered by `auth`.
 */
export const SERVER_VERBS = ['auth.challenge', 'envelope', 'queue.empty'] as const;
export type ServerVerb = (typeof SERVER_VERBS)[number];

export const RequestFrameSchema = Type.Object(
  {
    type: Type.Literal('request'),
    id: FrameIdSchema,
    verb: Type.String({ maxLength: 32 }),
    body: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);
export type RequestFrame = Static<typeof RequestFrameSchema>;

export const ResponseFrameSchema = Type.Object(
  {
    type: Type.Literal('response'),
    id: FrameIdSchema,
    status: Type.Integer({ minimum: 100, maximum: 599 }),
    body: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);
export type ResponseFrame = Static<typeof ResponseFrameSchema>;

export const FrameSchema = Type.Union([RequestFrameSchema, ResponseFrameSchema]);
export type Frame = Static<typeof FrameSchema>;

export const TokenAuthBodySchema = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 4096 }) },
  { additionalProperties: false },
);

/** `auth`: a device token, or on a socket opened for it a signature (socket-login.ts). */
export const AuthBodySchema = Type.Union([TokenAuthBodySchema, SignatureAuthBodySchema]);
export type AuthBody = Static<typeof AuthBodySchema>;

/**
 * Sent by the relay when a frame cannot be answered as a response (it is not JSON, or has no
 * usable id). Carries an error code from the catalogue.
 */
export const ErrorFrameSchema = Type.Object({
  type: Type.Literal('error'),
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.String()),
});
export type ErrorFrame = Static<typeof ErrorFrameSchema>;
