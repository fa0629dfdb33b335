import { Type, type Static } from 'typebox';
import { BASE64_PATTERN } from './base64.ts';
import { AccountIdSchema, DeviceIdSchema, EnvelopeIdSchema, RegistrationIdSchema } from './ids.ts';

/** Stored ciphertexts are capped per device, as Signal does. */
export const MAX_CONTENT_BYTES = 96 * 1024;
/**
 * Online-only ciphertexts (typing, ICE candidates) are never stored; they cross between relay
 * instances inside a PostgreSQL notification, whose payload is limited to 8000 bytes.
 */
export const MAX_ONLINE_CONTENT_BYTES = 4 * 1024;

/**
 * Room a client keeps, inside MAX_CONTENT_BYTES, for what encryption adds around its padded
 * plaintext: sealed sender (ephemeral key, sender certificate, MACs) and the first message of a
 * session (PQXDH: identity, base and one-time keys, a 1,568-byte Kyber ciphertext). Measured with
 * libsignal: 2,165 bytes for a first message carrying a text of the largest size
 * (packages/engine-node/test/client-resilience.integration.test.ts); 8 KiB leaves room for a
 * longer sender certificate.
 */
export const ENCRYPTION_OVERHEAD_BYTES = 8 * 1024;

/**
 * Longest text a client sends, in bytes of its JSON string (UTF-8; a line break or a quote
 * counts 2). The content around it (kind, ids, timer; twice as much in the copy to one's own
 * devices) and its padding to 160-byte blocks stay under 1 KiB, so a text of this size still fits
 * MAX_CONTENT_BYTES - ENCRYPTION_OVERHEAD_BYTES: the relay never refuses it for its size.
 */
export const MAX_TEXT_BYTES = 64 * 1024;

export const OutgoingMessageSchema = Type.Object(
  {
    deviceId: DeviceIdSchema,
    registrationId: RegistrationIdSchema,
    type: Type.Integer({
      minimum: 0,
      maximum: 255,
      description: 'Opaque to the relay: the client says how to decrypt content.',
    }),
    // No length bound in the schema: the decoded size is checked against the per-device limit
    // (96 KiB stored, 4 KiB online) so that an oversize ciphertext gets 413, not 400. No pattern
    // either: the relay checks the canonical spelling as it decodes (400 VALIDATION_FAILED, as a
    // schema error), where a scan with BASE64_PATTERN cost 5 % of its CPU per 1 KiB message.
    content: Type.String({
      minLength: 4,
      contentEncoding: 'base64',
      description:
        'Canonical padded base64 (the unused bits before the padding zero); anything else is refused with 400 VALIDATION_FAILED.',
    }),
  },
  { additionalProperties: false },
);
export type OutgoingMessage = Static<typeof OutgoingMessageSchema>;

/** PUT /v1/messages/{accountId}: one ciphertext per device of the recipient account. */
export const SendMessagesRequestSchema = Type.Object(
  {
    messages: Type.Array(OutgoingMessageSchema, { minItems: 1, maxItems: 8 }),
    online: Type.Optional(
      Type.Boolean({ description: 'Deliver only to connected devices; never stored.' }),
    ),
    urgent: Type.Optional(
      Type.Boolean({ description: 'Hint that the recipient should be woken (calls).' }),
    ),
  },
  { additionalProperties: false },
);
export type SendMessagesRequest = Static<typeof SendMessagesRequestSchema>;

/**
 * The socket's `message.send` body: the same request with the recipient account in it (over HTTP
 * it is in the path). Answered like the HTTP request: 200 {stored} once durable, or the same error
 * status and body.
 */
export const SocketSendRequestSchema = Type.Object(
  { accountId: AccountIdSchema, ...SendMessagesRequestSchema.properties },
  { additionalProperties: false },
);
export type SocketSendRequest = Static<typeof SocketSendRequestSchema>;

export const SendMessagesResponseSchema = Type.Object({
  stored: Type.Integer({ description: 'Envelopes now durable (0 for online messages).' }),
});
export type SendMessagesResponse = Static<typeof SendMessagesResponseSchema>;

/** 409: the request's device set differs from the account's. */
export const MismatchedDevicesSchema = Type.Object({
  missingDevices: Type.Array(DeviceIdSchema),
  extraDevices: Type.Array(DeviceIdSchema),
});
/** 410: registration ids that no longer match. */
export const StaleDevicesSchema = Type.Object({ staleDevices: Type.Array(DeviceIdSchema) });

/**
 * What a device receives. There is no sender field: the relay does not store who sent an
 * envelope; identifying the sender is the job of the (sealed) content.
 */
export const EnvelopeSchema = Type.Object({
  id: EnvelopeIdSchema,
  type: Type.Integer({ minimum: 0, maximum: 255 }),
  content: Type.String({ description: 'base64 ciphertext, exactly as sent.' }),
  urgent: Type.Boolean(),
  online: Type.Boolean(),
  storedHour: Type.Optional(
    Type.String({
      description: 'Hour the relay stored it (ISO 8601, truncated); absent if online.',
    }),
  ),
});
export type Envelope = Static<typeof EnvelopeSchema>;

/**
 * PUT /v1/messages/multi: one multi-recipient sealed message (libsignal's sealed sender v2
 * "SentMessage") for up to this many recipient accounts: a group of 1,000 members is the sender
 * and 999 others.
 */
export const MAX_MULTI_RECIPIENT_ACCOUNTS = 1000;
/**
 * Decoded size of one multi-recipient message. Each recipient account adds 66 bytes plus 3 per
 * device (service id, devices and registration ids, its key share and tag); 1,000 accounts with
 * 6 devices each take about 84 KiB, and the shared part is capped by MAX_CONTENT_BYTES since every
 * device stores a copy of it.
 */
export const MAX_MULTI_RECIPIENT_BYTES = 256 * 1024;

/** The `type` of a multi-recipient upload: libsignal's sealed sender v2. */
export const SEALED_SENDER_V2 = 2;

/**
 * The envelope type of every share the relay cuts from a multi-recipient upload: the device's
 * sealed sender v2 share, sealed again by the relay to the recipient account's identity key, so
 * that the stored shares of one upload share no bytes (libsignal's shares all end in the same
 * ephemeral key and ciphertext). Layout, docs/protocol.md: AT_REST_SHARE_VERSION, the 32-byte
 * X25519 ephemeral public key E, then AES-256-GCM of the share (ciphertext and 16-byte tag),
 * under the 32-byte key and 12-byte nonce that HKDF-SHA256 derives from X25519(e, identity key)
 * with salt E || the identity key as published (33 bytes) and info AT_REST_SHARE_INFO.
 */
export const SEALED_SENDER_V2_AT_REST = 3;
export const AT_REST_SHARE_VERSION = 0x01;
export const AT_REST_SHARE_INFO = 'privcomm at-rest share v1';
/** What the seal adds to a share: the version byte, E and the tag. */
export const AT_REST_SHARE_OVERHEAD_BYTES = 1 + 32 + 16;

export const SendMultiRecipientRequestSchema = Type.Object(
  {
    type: Type.Literal(SEALED_SENDER_V2, {
      description: `Sealed sender v2 (${SEALED_SENDER_V2}), the only kind the relay cuts; each device receives its share sealed at rest, as type ${SEALED_SENDER_V2_AT_REST}.`,
    }),
    content: Type.String({
      pattern: BASE64_PATTERN,
      minLength: 4,
      description: `base64 of a libsignal multi-recipient sealed message, at most ${MAX_MULTI_RECIPIENT_BYTES} bytes decoded.`,
    }),
    online: Type.Optional(
      Type.Boolean({ description: 'Deliver only to connected devices; never stored.' }),
    ),
    urgent: Type.Optional(
      Type.Boolean({ description: 'Hint that the recipients should be woken (calls).' }),
    ),
  },
  { additionalProperties: false },
);
export type SendMultiRecipientRequest = Static<typeof SendMultiRecipientRequestSchema>;

/** One recipient account whose device set differs from the upload's (409 or 410). */
export const MismatchedAccountSchema = Type.Object({
  accountId: AccountIdSchema,
  missingDevices: Type.Array(DeviceIdSchema),
  extraDevices: Type.Array(DeviceIdSchema),
  staleDevices: Type.Array(DeviceIdSchema),
});
export type MismatchedAccount = Static<typeof MismatchedAccountSchema>;
