import { Type, type Static } from 'typebox';

/**
 * The error catalogue. Every error the relay returns has one of these codes; the code is stable,
 * the HTTP status is fixed per code, and the message tells the caller what to do next.
 * docs/protocol.md lists the same table, and a test keeps the two in sync.
 */
export const ERRORS = {
  VALIDATION_FAILED: {
    status: 400,
    message: 'The request does not match the documented schema; fix the field named in details.',
  },
  MALFORMED_JSON: { status: 400, message: 'The body is not valid JSON; send a JSON document.' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'Send the body as application/json.',
  },
  BODY_TOO_LARGE: {
    status: 413,
    message: 'The request body exceeds the relay limit; send fewer or smaller items.',
  },
  CONTENT_TOO_LARGE: {
    status: 413,
    message: 'A ciphertext exceeds the per-device limit (96 KiB stored, 4 KiB online-only).',
  },
  UNAUTHENTICATED: {
    status: 401,
    message: 'Missing, expired or invalid token; authenticate the device again.',
  },
  CHALLENGE_INVALID: {
    status: 401,
    message: 'The challenge is unknown, used, expired or for another device; request a new one.',
  },
  SIGNATURE_INVALID: {
    status: 401,
    message: 'The signature does not verify with the device authentication key.',
  },
  FORBIDDEN: { status: 403, message: 'This device may not perform that action.' },
  INVITE_REQUIRED: {
    status: 403,
    message: 'This relay registers by invitation only; ask its operator for an invite code.',
  },
  INVITE_INVALID: {
    status: 403,
    message: 'The invite code is unknown, used up or expired; ask the operator for a new one.',
  },
  LINK_TOKEN_INVALID: {
    status: 403,
    message: 'The link token is unknown, used or expired; create a new one on the primary device.',
  },
  ACCOUNT_NOT_FOUND: { status: 404, message: 'No such account.' },
  DEVICE_NOT_FOUND: { status: 404, message: 'No such device on that account.' },
  NOT_FOUND: { status: 404, message: 'No such route; see /docs for the API.' },
  TURN_NOT_CONFIGURED: {
    status: 404,
    message: 'This relay offers no TURN server; place calls without one, or ask its operator.',
  },
  DISCOVERY_NOT_CONFIGURED: {
    status: 404,
    message:
      'This relay offers no phone-number discovery (no DISCOVERY_KEY); add contacts by account id.',
  },
  MISMATCHED_DEVICES: {
    status: 409,
    message:
      'The device list does not match the account: add sessions for missingDevices, drop extraDevices, and retry.',
  },
  DEVICE_LIMIT_REACHED: {
    status: 409,
    message: 'The account already has the maximum number of devices; remove one first.',
  },
  DISCOVERY_KEY_ROTATED: {
    status: 409,
    message:
      'The discovery key changed since that token was derived; evaluate the number again and publish the new token.',
  },
  STALE_DEVICES: {
    status: 410,
    message:
      'Some devices were re-registered: drop the sessions for staleDevices, fetch new bundles, and retry.',
  },
  UPGRADE_REQUIRED: {
    status: 426,
    message: 'This route is a WebSocket: connect with an Upgrade request.',
  },
  RATE_LIMITED: { status: 429, message: 'Too many requests; retry after the indicated delay.' },
  QUEUE_FULL: {
    status: 429,
    message:
      "A recipient device's queue is full until it comes online; keep the message and retry after the indicated delay.",
  },
  INTERNAL: { status: 500, message: 'The relay failed unexpectedly; retry later.' },
  UNAVAILABLE: {
    status: 503,
    message:
      'The relay cannot reach its database, or the database is out of space; retry with backoff.',
  },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** The body of every error response. */
export const ErrorBodySchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      details: Type.Optional(Type.String()),
    }),
    missingDevices: Type.Optional(Type.Array(Type.Integer())),
    extraDevices: Type.Optional(Type.Array(Type.Integer())),
    staleDevices: Type.Optional(Type.Array(Type.Integer())),
    /** A multi-recipient upload's 409 or 410: every recipient account whose device set differs. */
    accounts: Type.Optional(
      Type.Array(
        Type.Object({
          accountId: Type.String(),
          missingDevices: Type.Array(Type.Integer()),
          extraDevices: Type.Array(Type.Integer()),
          staleDevices: Type.Array(Type.Integer()),
        }),
      ),
    ),
    /** A multi-recipient upload's 404: the recipient accounts that do not exist. */
    unknownAccounts: Type.Optional(Type.Array(Type.String())),
    /** A multi-recipient upload's QUEUE_FULL: the recipient accounts with a full device queue. */
    fullAccounts: Type.Optional(Type.Array(Type.String())),
    retryAfterSeconds: Type.Optional(Type.Integer()),
  },
  { $id: 'ErrorBody' },
);
export type ErrorBody = Static<typeof ErrorBodySchema>;

/** WebSocket close codes the relay uses. 1000-1015 are the standard ones it may also send. */
export const CLOSE_CODES = {
  /** Normal closure, e.g. the client said goodbye. */
  NORMAL: 1000,
  /** The relay is shutting down; reconnect to another instance or later. */
  GOING_AWAY: 1001,
  /** A frame was larger than the frame limit. */
  TOO_BIG: 1009,
  /** Repeated invalid frames; fix the client. */
  PROTOCOL_VIOLATION: 4400,
  /** Not authenticated, token rejected, or the device or account was removed. Do not retry blindly. */
  UNAUTHENTICATED: 4401,
  /** No auth frame within the deadline, or no frame at all within the idle timeout. */
  TIMEOUT: 4408,
  /** Another socket authenticated as the same device; the newest one wins. */
  CONNECTED_ELSEWHERE: 4409,
  /** Envelopes stayed unacknowledged too long, or too many frames; queued envelopes stay stored. */
  SLOW_CONSUMER: 4429,
} as const;
export type CloseCode = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES];
