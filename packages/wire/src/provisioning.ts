import { Type, type Static } from 'typebox';
import { BASE64_PATTERN } from './base64.ts';

/**
 * Device linking transport. A new device opens the provisioning socket and receives a random
 * address; it shows the address (with its own ephemeral public key) to the primary device, e.g.
 * as a QR code. The primary encrypts the account identity and a link token to that key and PUTs
 * the ciphertext to the address; the relay hands it to whichever instance holds the socket and
 * forgets it. Nothing about it is stored, and the relay cannot read it.
 */

/** A provisioning address: 24 random bytes in base64url (no padding), chosen by the relay. */
export const PROVISIONING_ADDRESS_PATTERN = '^[A-Za-z0-9_-]{32}$';
export const ProvisioningAddressSchema = Type.String({
  pattern: PROVISIONING_ADDRESS_PATTERN,
  minLength: 32,
  maxLength: 32,
});
export type ProvisioningAddress = Static<typeof ProvisioningAddressSchema>;

/**
 * Largest provisioning ciphertext, decoded. It crosses between relay instances inside a
 * PostgreSQL notification, whose payload is limited to 8000 bytes.
 */
export const MAX_PROVISIONING_CONTENT_BYTES = 4 * 1024;

/** PUT /v1/provisioning/{address} (primary device only). */
export const ProvisioningMessageRequestSchema = Type.Object(
  {
    // No length bound in the schema: the decoded size is checked so that an oversize
    // ciphertext gets 413 CONTENT_TOO_LARGE, not 400.
    content: Type.String({
      pattern: BASE64_PATTERN,
      minLength: 4,
      description: 'base64 ciphertext for the new device, at most 4096 bytes decoded.',
    }),
  },
  { additionalProperties: false },
);
export type ProvisioningMessageRequest = Static<typeof ProvisioningMessageRequestSchema>;

/** 202: handed to the relay; whether a socket held the address is not revealed. */
export const ProvisioningMessageResponseSchema = Type.Object({}, { additionalProperties: false });

/** Verbs a client may send on the provisioning socket. */
export const PROVISIONING_CLIENT_VERBS = ['ping'] as const;

/**
 * Verbs the relay sends on the provisioning socket: first `provisioning.address` (id 1), then at
 * most one `provisioning.message` at a time. Answer the message with 2xx once it is decrypted;
 * the relay then closes the socket with 1000.
 */
export const PROVISIONING_SERVER_VERBS = ['provisioning.address', 'provisioning.message'] as const;
export type ProvisioningServerVerb = (typeof PROVISIONING_SERVER_VERBS)[number];

/** Body of the `provisioning.address` request. */
export const ProvisioningAddressBodySchema = Type.Object({ address: ProvisioningAddressSchema });
export type ProvisioningAddressBody = Static<typeof ProvisioningAddressBodySchema>;

/** Body of the `provisioning.message` request: the ciphertext exactly as the primary sent it. */
export const ProvisioningMessageBodySchema = Type.Object({
  content: Type.String({ description: 'base64 ciphertext, exactly as sent.' }),
});
export type ProvisioningMessageBody = Static<typeof ProvisioningMessageBodySchema>;
