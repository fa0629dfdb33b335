import { Type, type Static } from 'typebox';
import { exactBase64Pattern } from './base64.ts';

/**
 * TURN credentials for calls, in the form of coturn's TURN REST API (`use-auth-secret`). The relay
 * mints them from a secret it shares with the TURN server; the TURN server checks them without
 * asking the relay. Clients fetch them at call setup: nothing about TURN is built into a client.
 */

/**
 * A TURN URL as RFC 7065 writes it: `turn:` or `turns:`, a host (name, IPv4 address, or IPv6
 * address in brackets), an optional port and an optional `?transport=udp|tcp`. No `//`, no path,
 * no user part. The port range (1-65535) and the IPv6 literal are checked in code.
 */
export const TURN_URL_PATTERN =
  '^(turns?):(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::([0-9]{1,5}))?(?:\\?transport=(udp|tcp))?$';

/** The opaque part of a username: random base64url, never an account or device id. */
export const TURN_USERNAME_PATTERN = '^[0-9]{1,12}:[A-Za-z0-9_-]{16,64}$';

/** HMAC-SHA1 is 20 bytes. */
export const TURN_PASSWORD_BYTES = 20;

export const MIN_TURN_TTL_SECONDS = 60;
export const MAX_TURN_TTL_SECONDS = 86_400;

/** GET /v1/turn */
export const TurnCredentialsSchema = Type.Object(
  {
    urls: Type.Array(Type.String({ pattern: TURN_URL_PATTERN, maxLength: 300 }), {
      minItems: 1,
      description: 'TURN URLs to give the WebRTC ICE agent, in the configured order.',
    }),
    username: Type.String({
      pattern: TURN_USERNAME_PATTERN,
      description:
        '`<unix expiry seconds>:<random opaque id>`; the TURN server refuses new allocations after the expiry.',
    }),
    password: Type.String({
      pattern: exactBase64Pattern(TURN_PASSWORD_BYTES),
      description: 'base64 of HMAC-SHA1(TURN secret, username).',
    }),
    ttlSeconds: Type.Integer({
      minimum: MIN_TURN_TTL_SECONDS,
      maximum: MAX_TURN_TTL_SECONDS,
      description: 'Seconds from issue to the expiry in the username.',
    }),
  },
  { additionalProperties: false },
);
export type TurnCredentials = Static<typeof TurnCredentialsSchema>;
