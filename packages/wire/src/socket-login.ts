import { Type, type Static } from 'typebox';
import { AccountIdSchema, DeviceIdSchema } from './ids.ts';

/**
 * Logging in on the message socket itself (docs/protocol.md, "Login on the socket"): instead of
 * POST /v1/auth/challenge and /v1/auth/token before the socket, a client opens it with
 * SOCKET_LOGIN_QUERY; the relay's first frame is `auth.challenge` with a fresh nonce, and the
 * client's `auth` carries its signature over socketAuthMessage(...). The answer authenticates the
 * socket and carries a device token for the client's HTTP requests. Two HTTP round trips fewer per
 * login, and the relay writes no used challenge: the nonce lives in that socket only, and a socket
 * takes one `auth`.
 */
export const SOCKET_LOGIN_QUERY = 'login=signature';
export const SOCKET_LOGIN = 'signature';

/** Body of the relay's `auth.challenge` request (answer it with nothing: send `auth`). */
export const AuthChallengeBodySchema = Type.Object(
  {
    nonce: Type.String({ minLength: 44, maxLength: 44, description: 'base64 of 32 random bytes' }),
  },
  { additionalProperties: false },
);
export type AuthChallengeBody = Static<typeof AuthChallengeBodySchema>;

/** `auth` by signature: Ed25519(authKey, socketAuthMessage(accountId, deviceId, nonce)). */
export const SignatureAuthBodySchema = Type.Object(
  {
    accountId: AccountIdSchema,
    deviceId: DeviceIdSchema,
    signature: Type.String({ minLength: 88, maxLength: 88 }),
  },
  { additionalProperties: false },
);
export type SignatureAuthBody = Static<typeof SignatureAuthBodySchema>;

/** The answer to `auth` by signature: the socket's device, and a token for HTTP requests. */
export const SignatureAuthAnswerSchema = Type.Object({
  accountId: AccountIdSchema,
  deviceId: DeviceIdSchema,
  token: Type.String({ minLength: 1 }),
  expiresAt: Type.String(),
});
export type SignatureAuthAnswer = Static<typeof SignatureAuthAnswerSchema>;

/** The context of a socket login's signature: not the HTTP challenge's (AUTH_CONTEXT). */
export const SOCKET_AUTH_CONTEXT = 'privcomm-socket-auth-v1';

/**
 * The bytes signed for a login: the context, the account id and the device id separated by ':'
 * with a final ':' (ASCII), then the raw 32-byte nonce.
 */
export const loginMessage = (
  context: string,
  accountId: string,
  deviceId: number,
  nonce: Uint8Array,
): Uint8Array => {
  // Every character here is ASCII (a UUID, digits, the context), so one byte per character.
  const prefix = Uint8Array.from(`${context}:${accountId}:${deviceId}:`, (c) => c.charCodeAt(0));
  const message = new Uint8Array(prefix.length + nonce.length);
  message.set(prefix, 0);
  message.set(nonce, prefix.length);
  return message;
};

/** The exact bytes a device signs to log in on a socket whose challenge was `nonce`. */
export const socketAuthMessage = (
  accountId: string,
  deviceId: number,
  nonce: Uint8Array,
): Uint8Array => loginMessage(SOCKET_AUTH_CONTEXT, accountId, deviceId, nonce);
