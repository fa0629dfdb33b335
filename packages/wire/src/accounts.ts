import { Type, type Static } from 'typebox';
import { AccountIdSchema, DeviceIdSchema, RegistrationIdSchema } from './ids.ts';
import { loginMessage } from './socket-login.ts';
import { AuthKeySchema, IdentityKeySchema, KemPreKeySchema, SignedPreKeySchema } from './keys.ts';

/** At most this many devices per account, the primary included. */
export const MAX_DEVICES_PER_ACCOUNT = 6;

const InviteCodeSchema = Type.String({ minLength: 8, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });
const LinkTokenSchema = Type.String({ minLength: 16, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });

/** The keys every new device brings, so that it always has a usable bundle. */
const NewDeviceFields = {
  registrationId: RegistrationIdSchema,
  authKey: AuthKeySchema,
  signedPreKey: SignedPreKeySchema,
  kyberLastResortPreKey: KemPreKeySchema,
};

/** POST /v1/accounts: creates the account and its primary device (id 1) in one transaction. */
export const CreateAccountRequestSchema = Type.Object(
  {
    identityKey: IdentityKeySchema,
    ...NewDeviceFields,
    inviteCode: Type.Optional(InviteCodeSchema),
  },
  { additionalProperties: false },
);
export type CreateAccountRequest = Static<typeof CreateAccountRequestSchema>;

export const DeviceCreatedResponseSchema = Type.Object({
  accountId: AccountIdSchema,
  deviceId: DeviceIdSchema,
});
export type DeviceCreatedResponse = Static<typeof DeviceCreatedResponseSchema>;

/** POST /v1/devices/link-tokens (primary only): a one-time token for one new device. */
export const LinkTokenResponseSchema = Type.Object({
  linkToken: LinkTokenSchema,
  expiresAt: Type.String({ description: 'ISO 8601 time after which the token is refused.' }),
});
export type LinkTokenResponse = Static<typeof LinkTokenResponseSchema>;

/** POST /v1/devices: a new device joins the account the link token belongs to. */
export const LinkDeviceRequestSchema = Type.Object(
  { linkToken: LinkTokenSchema, ...NewDeviceFields },
  { additionalProperties: false },
);
export type LinkDeviceRequest = Static<typeof LinkDeviceRequestSchema>;

export const DeviceInfoSchema = Type.Object({
  deviceId: DeviceIdSchema,
  registrationId: RegistrationIdSchema,
  createdOn: Type.String({ description: 'Day of creation (YYYY-MM-DD); no finer.' }),
  lastSeenOn: Type.String({ description: 'Day last authenticated (YYYY-MM-DD); no finer.' }),
});
export type DeviceInfo = Static<typeof DeviceInfoSchema>;

export const DeviceListResponseSchema = Type.Object({ devices: Type.Array(DeviceInfoSchema) });
export type DeviceListResponse = Static<typeof DeviceListResponseSchema>;

/** GET /v1/accounts/{accountId}/identity: the identity key the relay holds for an account. */
export const IdentityResponseSchema = Type.Object({ identityKey: IdentityKeySchema });
export type IdentityResponse = Static<typeof IdentityResponseSchema>;

/** POST /v1/auth/challenge */
export const ChallengeRequestSchema = Type.Object(
  { accountId: AccountIdSchema, deviceId: DeviceIdSchema },
  { additionalProperties: false },
);
export type ChallengeRequest = Static<typeof ChallengeRequestSchema>;

export const ChallengeResponseSchema = Type.Object({
  nonce: Type.String({ description: 'base64 of 32 random bytes; single use.' }),
  expiresAt: Type.String(),
});
export type ChallengeResponse = Static<typeof ChallengeResponseSchema>;

/** POST /v1/auth/token: the Ed25519 signature over authChallengeMessage(...). */
export const TokenRequestSchema = Type.Object(
  {
    accountId: AccountIdSchema,
    deviceId: DeviceIdSchema,
    nonce: Type.String({ minLength: 44, maxLength: 44 }),
    signature: Type.String({ minLength: 88, maxLength: 88 }),
  },
  { additionalProperties: false },
);
export type TokenRequest = Static<typeof TokenRequestSchema>;

export const TokenResponseSchema = Type.Object({
  token: Type.String(),
  expiresAt: Type.String(),
});
export type TokenResponse = Static<typeof TokenResponseSchema>;

/** The context string that keeps an auth signature from meaning anything anywhere else. */
export const AUTH_CONTEXT = 'privcomm-device-auth-v1';

/**
 * The exact bytes a device signs to obtain a token: the context, the account id and the device
 * id as UTF-8 separated by ':' and a final ':', followed by the raw 32-byte nonce.
 */
export const authChallengeMessage = (
  accountId: string,
  deviceId: number,
  nonce: Uint8Array,
): Uint8Array => loginMessage(AUTH_CONTEXT, accountId, deviceId, nonce);
