import { Type, type Static } from 'typebox';

/**
 * Identifiers shared by the relay and its clients. Every id that crosses a boundary is checked
 * against one of these schemas; patterns (not formats) keep the HTTP validator and the frame
 * validator in exact agreement.
 */

export const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

/** A lowercase canonical UUID: the only spelling the relay accepts, so one account has one id. */
export const AccountIdSchema = Type.String({ pattern: UUID_PATTERN, maxLength: 36 });
export type AccountId = Static<typeof AccountIdSchema> & { readonly __brand: 'AccountId' };

export const EnvelopeIdSchema = Type.String({ pattern: UUID_PATTERN, maxLength: 36 });
export type EnvelopeId = Static<typeof EnvelopeIdSchema> & { readonly __brand: 'EnvelopeId' };

/** Device ids are small positive integers, never reused within an account. 1 is the primary. */
export const MAX_DEVICE_ID = 127;
export const PRIMARY_DEVICE_ID = 1;
export const DeviceIdSchema = Type.Integer({ minimum: 1, maximum: MAX_DEVICE_ID });
export type DeviceId = number & { readonly __brand: 'DeviceId' };

/** libsignal registration ids are 14-bit values chosen by the device. */
export const RegistrationIdSchema = Type.Integer({ minimum: 1, maximum: 16380 });

/** Prekey ids are 24-bit in libsignal (Kyber and EC alike). */
export const KeyIdSchema = Type.Integer({ minimum: 0, maximum: 0xffffff });

const UUID = new RegExp(UUID_PATTERN);

export const isAccountId = (value: unknown): value is AccountId =>
  typeof value === 'string' && UUID.test(value);

export const isEnvelopeId = (value: unknown): value is EnvelopeId =>
  typeof value === 'string' && UUID.test(value);

export const isDeviceId = (value: unknown): value is DeviceId =>
  typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_DEVICE_ID;

/** A device is addressed by its account and its id; this is the one textual form of it. */
export const deviceAddress = (accountId: AccountId, deviceId: DeviceId): string =>
  `${accountId}.${deviceId}`;
