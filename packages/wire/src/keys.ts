import { Type, type Static } from 'typebox';
import { Base64 } from './base64.ts';
import { DeviceIdSchema, KeyIdSchema, RegistrationIdSchema } from './ids.ts';

/**
 * Public key material as libsignal serialises it. The relay stores and hands these out; it never
 * interprets them beyond their length, and it never sees a private key.
 */

/** A serialised Curve25519 public key: a type byte and 32 bytes. */
export const EC_PUBLIC_KEY_BYTES = 33;
/** Kyber-1024 public keys are 1569 bytes serialised; the bound leaves room for the type byte. */
export const MAX_KEM_PUBLIC_KEY_BYTES = 1600;
export const SIGNATURE_BYTES = 64;
/** The device authentication key is a raw Ed25519 public key. */
export const ED25519_PUBLIC_KEY_BYTES = 32;
/** At most this many one-time keys per list in one upload. */
export const MAX_KEYS_PER_UPLOAD = 100;

export const IdentityKeySchema = Base64(EC_PUBLIC_KEY_BYTES, EC_PUBLIC_KEY_BYTES);
export const AuthKeySchema = Base64(ED25519_PUBLIC_KEY_BYTES, ED25519_PUBLIC_KEY_BYTES);

export const PreKeySchema = Type.Object(
  { keyId: KeyIdSchema, publicKey: Base64(EC_PUBLIC_KEY_BYTES, EC_PUBLIC_KEY_BYTES) },
  { additionalProperties: false },
);
export type PreKey = Static<typeof PreKeySchema>;

export const SignedPreKeySchema = Type.Object(
  {
    keyId: KeyIdSchema,
    publicKey: Base64(EC_PUBLIC_KEY_BYTES, EC_PUBLIC_KEY_BYTES),
    signature: Base64(SIGNATURE_BYTES, SIGNATURE_BYTES),
  },
  { additionalProperties: false },
);
export type SignedPreKey = Static<typeof SignedPreKeySchema>;

export const KemPreKeySchema = Type.Object(
  {
    keyId: KeyIdSchema,
    publicKey: Base64(MAX_KEM_PUBLIC_KEY_BYTES),
    signature: Base64(SIGNATURE_BYTES, SIGNATURE_BYTES),
  },
  { additionalProperties: false },
);
export type KemPreKey = Static<typeof KemPreKeySchema>;

/** PUT /v1/keys: every list present and non-empty replaces what is stored of that kind. */
export const UploadKeysRequestSchema = Type.Object(
  {
    preKeys: Type.Optional(Type.Array(PreKeySchema, { maxItems: MAX_KEYS_PER_UPLOAD })),
    kyberPreKeys: Type.Optional(Type.Array(KemPreKeySchema, { maxItems: MAX_KEYS_PER_UPLOAD })),
    signedPreKey: Type.Optional(SignedPreKeySchema),
    kyberLastResortPreKey: Type.Optional(KemPreKeySchema),
  },
  { additionalProperties: false },
);
export type UploadKeysRequest = Static<typeof UploadKeysRequestSchema>;

export const KeyCountsSchema = Type.Object({
  preKeys: Type.Integer({ description: 'One-time EC prekeys left.' }),
  kyberPreKeys: Type.Integer({ description: 'One-time Kyber prekeys left (not the last resort).' }),
});
export type KeyCounts = Static<typeof KeyCountsSchema>;

export const DeviceBundleSchema = Type.Object({
  deviceId: DeviceIdSchema,
  registrationId: RegistrationIdSchema,
  signedPreKey: SignedPreKeySchema,
  preKey: Type.Optional(PreKeySchema),
  kyberPreKey: KemPreKeySchema,
  kyberPreKeyIsLastResort: Type.Boolean(),
});
export type DeviceBundle = Static<typeof DeviceBundleSchema>;

/** GET /v1/keys/{accountId}/{deviceId|*} */
export const PreKeyBundleResponseSchema = Type.Object({
  identityKey: IdentityKeySchema,
  devices: Type.Array(DeviceBundleSchema),
});
export type PreKeyBundleResponse = Static<typeof PreKeyBundleResponseSchema>;
