import { Type } from 'typebox';
import { MAX_DEVICE_ID } from '@privcomm/wire';
import { AccountIdSchema, isDeviceId, type DeviceId } from '@privcomm/wire';
import { RelayError } from '../errors.ts';

/** Error responses every route may give, referenced by the OpenAPI document. */
export const errorResponses = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, { $ref: 'ErrorBody#' }]));

/** A WebSocket route: an upgrade request switches protocols, a plain GET is refused with 426. */
export const upgradeResponses = {
  101: { description: 'Switching Protocols: the WebSocket is open', type: 'null' },
  ...errorResponses(426, 429),
};

/** The route needs a device token (`Authorization: Bearer <token>` from /v1/auth/token). */
export const bearer = [{ bearer: [] }];

/** The route needs no credentials (said explicitly, so a forgotten `security` stands out). */
export const noCredentials: { [scheme: string]: string[] }[] = [];

/**
 * Path parameters are strings validated by pattern and converted here, rather than coerced by the
 * validator: "01", "+1" or "1e0" are refused instead of silently meaning device 1.
 */
export const DeviceIdParam = Type.String({ pattern: '^[1-9][0-9]{0,2}$', maxLength: 3 });
export const DeviceIdOrAllParam = Type.String({
  pattern: '^(?:[1-9][0-9]{0,2}|\\*)$',
  maxLength: 3,
});
export const AccountIdParam = AccountIdSchema;

export const parseDeviceId = (raw: string): DeviceId => {
  const value = Number(raw);
  if (!isDeviceId(value)) {
    throw new RelayError('VALIDATION_FAILED', `device id must be 1-${MAX_DEVICE_ID}`);
  }
  return value;
};
